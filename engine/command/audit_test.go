package command_test

import (
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine/command"
)

// TestAuditAfter: AuditAfter returns exactly the entries a reader has not
// seen, oldest first, before and after the audit ring wraps, and Audit(id)
// picks one key's entries out of a wrapped ring.
func TestAuditAfter(t *testing.T) {
	tr := command.New(command.Options{AuditSize: 8})
	defer tr.Close()
	var all []command.Transition
	add := func(n int) {
		for i := range n {
			all = append(all, tr.Annotate(fmt.Sprint("A", len(all)%3), "local", fmt.Sprint("event ", i)))
		}
	}
	check := func(stage string) {
		t.Helper()
		kept := all[max(0, len(all)-8):]
		for _, after := range []uint64{0, kept[0].Seq - 1, kept[0].Seq, kept[len(kept)/2].Seq, kept[len(kept)-1].Seq, kept[len(kept)-1].Seq + 5} {
			var want []uint64
			for _, k := range kept {
				if k.Seq > after {
					want = append(want, k.Seq)
				}
			}
			var got []uint64
			for _, k := range tr.AuditAfter(after) {
				got = append(got, k.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: AuditAfter(%d) = %v, want %v", stage, after, got, want)
			}
		}
		var ring []uint64
		for _, k := range tr.Audit("") {
			ring = append(ring, k.Seq)
		}
		var want []uint64
		for _, k := range kept {
			want = append(want, k.Seq)
		}
		if fmt.Sprint(ring) != fmt.Sprint(want) {
			t.Errorf("%s: Audit(\"\") = %v, want %v", stage, ring, want)
		}
	}
	add(5)
	check("before the ring is full")
	add(6)
	check("wrapped")
	add(13)
	check("wrapped again")
}

// BenchmarkAuditRead: a reader polling a full audit (100,000 entries) for
// what is new, with AuditAfter (nothing new, or the newest 10 entries) and
// with a whole copy filtered afterwards, as the readers did before.
func BenchmarkAuditRead(b *testing.B) {
	tr := command.New(command.Options{AuditSize: 100_000})
	defer tr.Close()
	var last uint64
	for i := range 100_000 {
		last = tr.Annotate(fmt.Sprint("A", i%100), "local", "event").Seq
	}
	for _, bc := range []struct {
		name string
		read func() int
	}{
		{"after/none-new", func() int { return len(tr.AuditAfter(last)) }},
		{"after/10-new", func() int { return len(tr.AuditAfter(last - 10)) }},
		{"whole-copy", func() int { return len(tr.Audit("")) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.read()
			}
		})
	}
}
