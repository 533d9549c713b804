package main

import (
	"slices"
	"testing"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// TestArbiterRecordsEventsPastAuditLimit: the lease events the edge sends
// to the hub are every audit entry without a command after the last sent,
// however many command transitions follow them (Arbiter.Audit answers at
// most its last 1,000 entries, which left the older lease events out).
func TestArbiterRecordsEventsPastAuditLimit(t *testing.T) {
	arb, err := control.Open(control.Options{Dir: t.TempDir(), Transport: &control.LateTransport{}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = arb.Close() })
	tk := arb.Tracker()
	first := tk.Annotate("pump-1", "scada", "lease taken by scada")
	c, err := tk.Submit(command.Command{Asset: "pump-1", Service: command.SetPoints, Origin: "scada"})
	if err != nil {
		t.Fatal(err)
	}
	for range 1500 {
		if err := tk.Note(c.ID, "repeated"); err != nil {
			t.Fatal(err)
		}
	}
	last := tk.Annotate("pump-1", "scada", "lease released by scada")

	tests := []struct {
		name  string
		after uint64
		want  []uint64
	}{
		{"from the start", 0, []uint64{first.Seq, last.Seq}},
		{"after the first", first.Seq, []uint64{last.Seq}},
		{"after the last", last.Seq, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for _, ev := range (arbiterRecords{arb}).Events(tc.after) {
				if ev.ID != "" {
					t.Fatalf("entry %d of command %q among the lease events", ev.Seq, ev.ID)
				}
				got = append(got, ev.Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("lease events %v, want %v", got, tc.want)
			}
		})
	}
}
