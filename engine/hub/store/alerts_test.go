package store_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

type msg struct {
	id string
	a  store.AlertRecord
}

func raise(edge, id, asset string, seq string, occur time.Time, v float64) msg {
	return msg{edge + "/alerts/" + seq, store.AlertRecord{ID: id, Edge: edge, Asset: asset, Rule: "hot", Severity: "major",
		Type: "temp", Content: "too hot", Value: v, Occur: occur, State: store.AlertRaised, RuleSetVersion: "7"}}
}

func clearMsg(edge, id, asset string, seq string, occur, recov time.Time, v float64) msg {
	m := raise(edge, id, asset, seq, occur, v)
	m.a.Recover, m.a.State = recov, store.AlertCleared
	return m
}

func TestAlertConvergence(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// The edges' history: a1 raised, cleared, raised, cleared; a2 raised,
	// cleared, raised again; a3 raised and cleared at the same instant.
	history := []msg{
		raise("e1", "a1", "t1", "1", at(1), 80),
		raise("e2", "a2", "t2", "1", at(1), 90),
		clearMsg("e1", "a1", "t1", "2", at(1), at(2), 60),
		clearMsg("e2", "a2", "t2", "2", at(1), at(3), 50),
		raise("e1", "a1", "t1", "3", at(4), math.Inf(1)),
		raise("e2", "a2", "t2", "3", at(5), math.NaN()),
		clearMsg("e1", "a1", "t1", "4", at(4), at(6), 40),
		raise("e1", "a3", "t1", "5", at(7), 1),
		clearMsg("e1", "a3", "t1", "6", at(7), at(7), 1),
	}
	want := map[string]struct {
		state          string
		occur, recover time.Time
	}{
		"a1": {store.AlertCleared, at(4), at(6)},
		"a2": {store.AlertRaised, at(5), time.Time{}},
		"a3": {store.AlertCleared, at(7), at(7)},
	}
	reversed := slices.Clone(history)
	slices.Reverse(reversed)
	var e1, e2 []msg
	for _, m := range history {
		if m.a.Edge == "e1" {
			e1 = append(e1, m)
		} else {
			e2 = append(e2, m)
		}
	}
	tests := []struct {
		name  string
		order []msg
	}{
		{"in order", history},
		{"reversed", reversed},
		{"duplicates", append(append(slices.Clone(history), reversed...), history...)},
		{"edges one after the other", append(slices.Clone(e2), e1...)},
		{"late raise after clear", append(slices.Clone(history[2:]), history[:2]...)},
		{"clear before its raise", []msg{history[8], history[7], history[6], history[4], history[2], history[0], history[5], history[3], history[1]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, store.Options{})
			ctx := context.Background()
			for _, m := range tc.order {
				if err := s.ApplyAlert(ctx, m.a, m.id); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Alerts(ctx, false, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d alerts, want %d: %+v", len(got), len(want), got)
			}
			for _, a := range got {
				w := want[a.ID]
				if a.State != w.state || !a.Occur.Equal(w.occur) || !a.Recover.Equal(w.recover) || a.RuleSetVersion != "7" {
					t.Errorf("%s: %s occur %v recover %v, want %s %v %v", a.ID, a.State, a.Occur, a.Recover, w.state, w.occur, w.recover)
				}
			}
			active, err := s.Alerts(ctx, true, "t2")
			if err != nil {
				t.Fatal(err)
			}
			if len(active) != 1 || active[0].ID != "a2" || !math.IsNaN(active[0].Value) {
				t.Errorf("active on t2: %+v", active)
			}
			if active, _ := s.Alerts(ctx, true, "t1"); len(active) != 0 {
				t.Errorf("active on t1: %+v", active)
			}
			tr, err := s.Transitions(ctx, "e1", "a1")
			if err != nil {
				t.Fatal(err)
			}
			var states []string
			for i, x := range tr {
				states = append(states, x.State)
				if i > 0 && x.Time.Before(tr[i-1].Time) {
					t.Errorf("transitions out of order: %+v", tr)
				}
			}
			if !slices.Equal(states, []string{"raised", "cleared", "raised", "cleared"}) || !math.IsInf(tr[2].Value, 1) {
				t.Errorf("a1 transitions %+v", tr)
			}
		})
	}
}

func TestAlertRejects(t *testing.T) {
	s := open(t, store.Options{MaxTextBytes: 64})
	ctx := context.Background()
	ok := raise("e1", "a1", "t1", "1", time.Unix(0, 0), 1)
	tests := []struct {
		name string
		msg  string
		edit func(*store.AlertRecord)
	}{
		{"bad state", "m1", func(a *store.AlertRecord) { a.State = "open" }},
		{"NUL in content", "m2", func(a *store.AlertRecord) { a.Content = "a\x00b" }},
		{"long content", "m3", func(a *store.AlertRecord) { a.Content = string(make([]byte, 65)) }},
		{"no id", "m4", func(a *store.AlertRecord) { a.ID = "" }},
		{"no msg id", "", func(*store.AlertRecord) {}},
		{"invalid UTF-8", "m5", func(a *store.AlertRecord) { a.Asset = "\xff" }},
	}
	for _, tc := range tests {
		a := ok.a
		tc.edit(&a)
		if err := s.ApplyAlert(ctx, a, tc.msg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if got, _ := s.Alerts(ctx, false, ""); len(got) != 0 {
		t.Errorf("rejected alerts stored: %+v", got)
	}
}
