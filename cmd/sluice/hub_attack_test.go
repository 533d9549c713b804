//go:build !sluice_lean

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// hostileText is what an edge may put in a reason, a pipeline name, a
// label or an alert: terminal escape sequences (clear the screen, set the
// window title, a C1 CSI) and line breaks that would forge lines of the
// listing.
const hostileText = "x\x1b[2J\x1b]0;owned\x07\u009b31m\r\nedge e9: online\tforged"

// TestHubCommandsPrintEdgeTextSafely: the text commands print what edges
// sent with control characters escaped, so an edge can neither drive the
// operator's terminal nor forge lines of a listing.
func TestHubCommandsPrintEdgeTextSafely(t *testing.T) {
	now := time.Now()
	v := 1.5
	at := now.Add(-time.Second)
	var b bytes.Buffer
	printHubEdge(&b, server.EdgeDetail{
		EdgeView: server.EdgeView{ID: "e1", Online: true, LastSeen: &at, Labels: map[string]string{"site": hostileText},
			Bundle: hostileText, Version: 1, Software: hostileText, Running: []store.Pipeline{{Pipeline: hostileText, State: hostileText}}},
		History: []server.ReportView{{Time: now, Bundle: hostileText, Version: 1, Outcome: "rejected", Reason: hostileText}},
	}, now)
	printRelease(&b, server.ReleaseView{ID: "r1", Bundle: "wf", Version: 1, Target: "all",
		Edges: []server.ReleaseEdgeView{{Edge: "e1", State: "rejected", Reason: hostileText}}})
	if err := printEdges(&b, []server.EdgeView{{ID: "e1", Bundle: hostileText, Version: 1}}, now); err != nil {
		t.Fatal(err)
	}
	if err := printAlerts(&b, []server.AlertView{{ID: "a", Edge: "e1", State: "raised", Severity: hostileText, Asset: hostileText,
		Rule: hostileText, Content: hostileText, Value: &v, ChangedAt: now}}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\r", "\nedge e9", "\tforged"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, `x\x1b[2J`) {
		t.Errorf("the escaped text is not shown:\n%s", out)
	}
}
