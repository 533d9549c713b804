package store_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestRefusalsAreInvalid: every value the store refuses before writing
// (a version beyond int64, an unknown outcome or state, an empty id,
// command inputs it could not read back, a time outside the years 1 to
// 9999, which JSON does not hold) is
// an ErrInvalid data error, so the ingest sets its message aside; any
// other error is retried for ever.
func TestRefusalsAreInvalid(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	now := time.Now().UTC()
	future, past := time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-100, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, err := range map[string]error{
		"heartbeat version": s.RecordHeartbeat(ctx, "e1", store.HeartbeatInfo{At: now, Bundle: "wf", Version: 1 << 63}),
		"heartbeat edge":    s.RecordHeartbeat(ctx, "", store.HeartbeatInfo{At: now}),
		"report version":    s.RecordReport(ctx, "e1", store.Report{Time: now, Bundle: "wf", Version: math.MaxUint64, Outcome: store.Applied}),
		"report outcome":    s.RecordReport(ctx, "e1", store.Report{Time: now, Bundle: "wf", Version: 1, Outcome: "exploded"}),
		"report edge":       s.RecordReport(ctx, "", store.Report{Time: now, Bundle: "wf", Version: 1, Outcome: store.Applied}),
		"register edge":     s.RegisterEdge(ctx, ""),
		"alert state":       s.ApplyAlert(ctx, store.AlertRecord{Edge: "e1", ID: "a", State: "melted", Occur: now}, "e1/alerts/1"),
		"alert id":          s.ApplyAlert(ctx, store.AlertRecord{Edge: "e1", State: store.AlertRaised, Occur: now}, "e1/alerts/2"),
		"heartbeat time":    s.RecordHeartbeat(ctx, "e1", store.HeartbeatInfo{At: past}),
		"report time":       s.RecordReport(ctx, "e1", store.Report{Time: future, Bundle: "wf", Version: 1, Outcome: store.Applied}),
		"alert time":        s.ApplyAlert(ctx, store.AlertRecord{Edge: "e1", ID: "a", State: store.AlertRaised, Occur: future}, "e1/alerts/3"),
		"command time": s.RecordCommand(ctx, store.Command{Edge: "e1", ID: "y", Asset: "T1", Status: "acked",
			Created: now, Updated: now, Expiry: future, Version: 1}),
		"lease event time": s.RecordLeaseEvent(ctx, store.LeaseEvent{Edge: "e1", Seq: 1, At: future, Asset: "T1"}),
		"command inputs": s.RecordCommand(ctx, store.Command{Edge: "e1", ID: "x", Asset: "T1", Status: "acked",
			Inputs: map[string]any{"p": json.Number("1e400")}, Created: now, Updated: now, Version: 1}),
	} {
		if err == nil || !store.IsDataError(err) {
			t.Errorf("%s: %v, want a data error", name, err)
		}
	}
}

// TestCommandClockAhead: a command record an edge stamps a year ahead of
// the hub's clock is listed as created now, not above every command of
// every edge until that year: the newest page of the listing (the
// console's 100) still shows the commands the hub issues afterwards.
func TestCommandClockAhead(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	clock := now
	s := open(t, store.Options{Now: func() time.Time { return clock }})
	ctx := context.Background()
	ahead := now.AddDate(1, 0, 0)
	for i, id := range []string{"x1", "x2", "x3"} {
		if err := s.RecordCommand(ctx, store.Command{Edge: "evil", ID: id, Asset: "T1", Status: "acked",
			Created: ahead.Add(time.Duration(i) * time.Second), Updated: ahead, Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	clock = now.Add(time.Minute)
	if err := s.InsertCommand(ctx, store.Command{Edge: "e2", ID: "c-1", Asset: "T2", Status: store.CommandIssued,
		Origin: "cloud:hub", Created: clock, Updated: clock}); err != nil {
		t.Fatal(err)
	}
	var first []string
	if err := s.CommandsAfter(ctx, store.CommandFilter{}, nil, 2, func(c store.Command) bool {
		first = append(first, c.Edge+"/"+c.ID)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || first[0] != "e2/c-1" {
		t.Fatalf("newest commands %v, want e2/c-1 first", first)
	}
	c, err := s.GetCommand(ctx, "evil", "x1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Created.After(clock) {
		t.Fatalf("created %v, after the hub's clock %v", c.Created, clock)
	}
}
