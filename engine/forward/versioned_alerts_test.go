package forward_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/forward"
)

// TestDropAlertsReachVersionedAlertSink: a sink of alerts that name rule
// set versions (engine.VersionedAlertSchema, the output of alert steps
// that include rule sets) carries alerts like one of engine.AlertSchema:
// the drop alerts of its run reach it, without a version.
func TestDropAlertsReachVersionedAlertSink(t *testing.T) {
	sh := engine.NewShared()
	ap := &fakePub{}
	as := alertSink(t, ap, sh, func(o *forward.Options) { o.Schema = engine.VersionedAlertSchema })
	p := &fakePub{}
	p.down.Store(true)
	counters := engine.NewCounters()
	s := newSink(t, p, t.TempDir()+"/buf", func(o *forward.Options) {
		o.Counters = counters
		o.Buffer.MaxBytes = 32 << 10
		o.Buffer.SegmentBytes = 4 << 10
		o.Buffer.Policy = buffer.DropOldest
		o.Shared = sh
	})
	for i := range 100 {
		write(t, s, i*50, 50)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := as.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := counters.Counter("alerts_unrouted").Load(); n != 0 {
		t.Errorf("%d drop alerts found no sink carrying alerts", n)
	}
	n := 0
	for _, a := range alertRows(t, ap.messages()) {
		if a.rule == forward.DropAlertRule {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no drop alert reached the sink of versioned alerts")
	}
	for _, m := range ap.messages() {
		if strings.Contains(string(m.Payload), engine.RuleSetVersionColumn) {
			t.Errorf("an engine alert names a rule set version: %s", m.Payload)
		}
	}
}
