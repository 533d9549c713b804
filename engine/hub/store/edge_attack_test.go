package store_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestRefusalsAreInvalid: every value the store refuses before writing
// (a version beyond int64, an unknown outcome or state, an empty id) is
// an ErrInvalid data error, so the ingest sets its message aside; any
// other error is retried for ever.
func TestRefusalsAreInvalid(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	now := time.Now().UTC()
	for name, err := range map[string]error{
		"heartbeat version": s.RecordHeartbeat(ctx, "e1", store.HeartbeatInfo{At: now, Bundle: "wf", Version: 1 << 63}),
		"heartbeat edge":    s.RecordHeartbeat(ctx, "", store.HeartbeatInfo{At: now}),
		"report version":    s.RecordReport(ctx, "e1", store.Report{Time: now, Bundle: "wf", Version: math.MaxUint64, Outcome: store.Applied}),
		"report outcome":    s.RecordReport(ctx, "e1", store.Report{Time: now, Bundle: "wf", Version: 1, Outcome: "exploded"}),
		"report edge":       s.RecordReport(ctx, "", store.Report{Time: now, Bundle: "wf", Version: 1, Outcome: store.Applied}),
		"register edge":     s.RegisterEdge(ctx, ""),
		"alert state":       s.ApplyAlert(ctx, store.AlertRecord{Edge: "e1", ID: "a", State: "melted", Occur: now}, "e1/alerts/1"),
		"alert id":          s.ApplyAlert(ctx, store.AlertRecord{Edge: "e1", State: store.AlertRaised, Occur: now}, "e1/alerts/2"),
	} {
		if err == nil || !store.IsDataError(err) {
			t.Errorf("%s: %v, want a data error", name, err)
		}
	}
}
