package mqtt

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

type routeRecorder struct {
	mu   sync.Mutex
	rows []enginetest.Row
}

func (r *routeRecorder) Raise(rec arrow.RecordBatch) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, enginetest.Rows(rec)...)
	return 1
}

func (r *routeRecorder) states() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, row := range r.rows {
		out = append(out, row[10].(string))
	}
	return out
}

// TestTakeoverAlarm: repeated takeovers raise one critical engine alert,
// which clears once a connection has held for the quiet period.
func TestTakeoverAlarm(t *testing.T) {
	sh := engine.NewShared()
	rec := &routeRecorder{}
	engine.AlertRouteOf(sh, func() engine.AlertRoute { return rec })
	a := &takeoverAlarm{asset: "p/devices", client: "sha256:abc", shared: sh, log: slog.New(slog.DiscardHandler), quiet: 20 * time.Millisecond}
	for range 10 {
		a.takenOver(time.Now())
		a.up()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.states()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("alerts %v, want raised then cleared", rec.states())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := rec.states(); len(got) != 2 || got[0] != engine.AlertRaised || got[1] != engine.AlertCleared {
		t.Fatalf("alerts %v, want one raise and its clear", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.rows[0][1] != rec.rows[1][1] || rec.rows[0][3] != TakeoverAlertRule || rec.rows[0][4] != "critical" {
		t.Errorf("alert rows %v", rec.rows)
	}
}
