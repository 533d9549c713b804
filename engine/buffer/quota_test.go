package buffer_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// dropLog collects drop reports.
type dropLog struct {
	mu    sync.Mutex
	drops []buffer.Drop
}

func (l *dropLog) add(d buffer.Drop) {
	l.mu.Lock()
	l.drops = append(l.drops, d)
	l.mu.Unlock()
}

func TestQuotaPolicies(t *testing.T) {
	const quota = 24 << 10
	for _, tc := range []struct {
		name     string
		schema   *engine.Schema
		policy   buffer.Policy
		wantFull bool
		wantDrop bool
	}{
		{"reject_new", testSchema, buffer.RejectNew, true, false},
		{"drop_oldest", testSchema, buffer.DropOldest, false, true},
		{"downsample raw data", testSchema, buffer.Downsample, false, true},
		{"downsample keeps alerts", engine.AlertSchema, buffer.Downsample, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			var drops dropLog
			o := opts(fs, mem)
			o.Schema = tc.schema
			o.MaxBytes, o.Policy, o.SegmentBytes = quota, tc.policy, 8<<10
			o.OnDrop = drops.add
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			acked := map[uint64]bool{}
			full := false
			for k := range 120 {
				rec := anyRows(mem, tc.schema, int64(k*20), 20)
				first, err := b.Append(rec)
				rec.Release()
				switch {
				case errors.Is(err, buffer.ErrFull):
					full = true
					continue
				case err != nil:
					t.Fatal(err)
				}
				for i := range uint64(20) {
					acked[first+i] = true
				}
				if err := b.Seal(); err != nil {
					t.Fatal(err)
				}
				if st := b.Status(); st.QuotaUsed > quota {
					t.Fatalf("using %d bytes of a %d quota", st.QuotaUsed, quota)
				}
			}
			if full != tc.wantFull {
				t.Fatalf("ErrFull returned: %v, want %v", full, tc.wantFull)
			}
			if got := len(drops.drops) > 0; got != tc.wantDrop {
				t.Fatalf("dropped: %v, want %v", got, tc.wantDrop)
			}
			// Drops are the oldest rows, reported as contiguous ranges
			// from the start, and counted.
			next := uint64(1)
			var rowsDropped int64
			for _, d := range drops.drops {
				if d.First != next || d.Reason != "quota" || d.Policy != tc.policy || d.Rows != int64(d.Last-d.First+1) || d.MinTime.IsZero() {
					t.Fatalf("drop %+v (expected to start at %d)", d, next)
				}
				next = d.Last + 1
				rowsDropped += d.Rows
			}
			st := b.Status()
			if st.DroppedRows != rowsDropped || st.DroppedSegments != int64(len(drops.drops)) {
				t.Fatalf("status counts %d rows in %d drops, reported %d in %d", st.DroppedRows, st.DroppedSegments, rowsDropped, len(drops.drops))
			}
			// Everything not dropped is read, in order.
			n := 0
			ctxRead(t, b, func(seq uint64) {
				if seq < next || !acked[seq] {
					t.Fatalf("read sequence %d (drops end at %d)", seq, next-1)
				}
				n++
			})
			if want := len(acked) - int(rowsDropped); n != want {
				t.Fatalf("read %d rows, want %d", n, want)
			}
		})
	}
}

// anyRows builds n rows of testSchema or of the alert schema.
func anyRows(mem memory.Allocator, s *engine.Schema, id int64, n int) arrow.RecordBatch {
	if s == testSchema {
		return rows(mem, s, id, n)
	}
	var rs []enginetest.Row
	for k := id; k < id+int64(n); k++ {
		rs = append(rs, enginetest.Row{t0 + k, fmt.Sprintf("alert-%d", k), "turbine-1", "overheat", "major", "temperature",
			"temperature above limit", float64(k), t0 + k, nil, engine.AlertRaised})
	}
	return enginetest.Record(mem, s, rs...)
}

// ctxRead calls fn with the sequence of every row Next has now.
func ctxRead(t *testing.T, b *buffer.Buffer, fn func(uint64)) {
	t.Helper()
	ctx, cancel := contextDone()
	defer cancel()
	for {
		e, err := b.Next(ctx)
		if err != nil {
			return
		}
		for i := range uint64(e.Rec.NumRows()) {
			fn(e.First + i)
		}
		e.Rec.Release()
	}
}

func TestSharedQuotaDownsample(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	q := buffer.NewQuota(96<<10, buffer.Downsample, nil)
	var alerts *buffer.Buffer
	var rawDrops dropLog
	ro := opts(fs, mem)
	ro.Quota, ro.SegmentBytes = q, 16<<10
	// Every drop becomes an alert appended to the alert buffer, which
	// shares the quota: the callback runs without locks held (and may
	// itself cause a drop, reported by a nested call).
	ro.OnDrop = func(d buffer.Drop) {
		rawDrops.add(d)
		rec := enginetest.Record(mem, engine.AlertSchema, enginetest.Row{d.MaxTime, "buffer-drop", "site", "buffer_quota", "major",
			"buffer_drop", d.String(), float64(d.Rows), d.MaxTime, nil, engine.AlertRaised})
		defer rec.Release()
		if _, err := alerts.Append(rec); err != nil {
			t.Errorf("alert append: %v", err)
		}
	}
	raw := mustOpen(t, "/raw", ro)
	defer raw.Close()
	ao := opts(fs, mem)
	ao.Schema, ao.Quota, ao.SegmentBytes = engine.AlertSchema, q, 16<<10
	alerts = mustOpen(t, "/alerts", ao)
	defer alerts.Close()

	for k := range 100 {
		rec := rows(mem, testSchema, int64(k*100), 100)
		_, err := raw.Append(rec)
		rec.Release()
		if err != nil {
			t.Fatalf("raw append %d: %v", k, err)
		}
		raw.Seal()
		if k%4 == 0 {
			rec := anyRows(mem, engine.AlertSchema, int64(k), 5)
			_, err := alerts.Append(rec)
			rec.Release()
			if err != nil {
				t.Fatalf("alert append %d: %v", k, err)
			}
			alerts.Seal()
		}
		if used := q.Used(); used > q.Max() {
			t.Fatalf("quota used %d > %d", used, q.Max())
		}
	}
	if len(rawDrops.drops) == 0 {
		t.Fatalf("nothing dropped from the raw buffer: raw %+v", raw.Status())
	}
	if st := alerts.Status(); st.DroppedRows != 0 || st.NextSeq != 25*5+uint64(len(rawDrops.drops))+1 {
		t.Fatalf("alert buffer: %+v (drops %d)", st, len(rawDrops.drops))
	}
	// With only alerts left to drop, downsample rejects.
	for range 200 {
		rec := anyRows(mem, engine.AlertSchema, 0, 50)
		_, err := alerts.Append(rec)
		rec.Release()
		if errors.Is(err, buffer.ErrFull) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		alerts.Seal()
	}
	t.Fatal("alerts were never rejected")
}

func TestDefaultDroppable(t *testing.T) {
	window := engine.MustSchema([]engine.Field{
		{Name: "window_start", Type: engine.Timestamp}, {Name: "window_end", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String}, {Name: "avg", Type: engine.Float64},
	}, "window_end", "asset")
	for _, tc := range []struct {
		s    *engine.Schema
		want bool
	}{{testSchema, true}, {engine.AlertSchema, false}, {engine.VersionedAlertSchema, false}, {window, false}} {
		if got := buffer.DefaultDroppable(tc.s); got != tc.want {
			t.Errorf("DefaultDroppable(%s) = %v", tc.s, got)
		}
	}
}

func TestTTL(t *testing.T) {
	for _, tc := range []struct {
		name string
		by   buffer.TTLBasis
		// appended at wall time now+k*hour; event time t0+id seconds
	}{
		{"event time", buffer.ByEventTime},
		{"age", buffer.ByAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			now := time.UnixMilli(t0).Add(24 * time.Hour)
			var drops dropLog
			o := opts(faultfs.New(), mem)
			o.TTL, o.TTLBy, o.OnDrop = 2*time.Hour, tc.by, drops.add
			o.Now = func() time.Time { return now }
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			// Four segments, an hour apart both in wall-clock and in event
			// time (rows' event time is t0 + id seconds).
			for k := range 4 {
				id := int64(k) * 3600
				if tc.by == buffer.ByEventTime {
					now = time.UnixMilli(t0 + (id+10)*1000)
				}
				appendN(t, b, mem, id, 1, 10)
				b.Roll()
				if err := b.Seal(); err != nil {
					t.Fatal(err)
				}
				if tc.by == buffer.ByAge {
					now = now.Add(time.Hour)
				}
			}
			dead := rows(mem, testSchema, 0, 2)
			if err := b.DeadLetter(1, dead, errors.New("bad")); err != nil {
				t.Fatal(err)
			}
			dead.Release()
			// The clock moves on: two segments are now older than two
			// hours (the oldest was appended 3.5 hours ago, or holds
			// events 3.5 hours old).
			if tc.by == buffer.ByAge {
				now = now.Add(-30 * time.Minute)
			} else {
				now = now.Add(30 * time.Minute)
			}
			got, err := b.Expire()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].First != 1 || got[1].Last != 20 || got[0].Reason != "ttl" {
				t.Fatalf("expired %v", got)
			}
			if len(drops.drops) != 2 || len(b.Segments()) != 2 {
				t.Fatalf("reported %d drops, %d segments left", len(drops.drops), len(b.Segments()))
			}
			var seqs []uint64
			ctxRead(t, b, func(s uint64) { seqs = append(seqs, s) })
			if len(seqs) != 20 || seqs[0] != 21 {
				t.Fatalf("read %d rows from %v", len(seqs), seqs[:1])
			}
			// Dead letters expire by age.
			now = now.Add(48 * time.Hour)
			got, _ = b.Expire()
			if len(b.DeadLetters()) != 0 {
				t.Fatalf("dead letter kept after its TTL; expired %v", got)
			}
		})
	}
}
