package forward_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
)

var schema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}, {Name: "v", Type: engine.Float64},
}, "time", "asset")

// rows builds n rows whose value is the global row number from base.
func rows(base, n int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	for i := range n {
		k := base + i
		rb.Timestamp(0).Append(arrow.Timestamp(1_700_000_000_000 + int64(k)))
		rb.String(1).Append(fmt.Sprintf("A%d", k%7))
		rb.Float64(2).Append(float64(k))
		rb.RowDone()
	}
	return rb.NewRecord()
}

// fakePub stores what it is given; it can be down or reject messages.
type fakePub struct {
	mu     sync.Mutex
	got    []*message.Message
	down   atomic.Bool
	reject func(*message.Message) bool
	calls  atomic.Int64
}

func (p *fakePub) Publish(_ string, msgs ...*message.Message) error {
	p.calls.Add(1)
	if p.down.Load() {
		return errors.New("connection refused")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		if p.reject != nil && p.reject(m) {
			return outbound.MarkPermanent(fmt.Errorf("message %s too large", m.UUID))
		}
		p.got = append(p.got, m)
	}
	return nil
}

func (p *fakePub) Close() error { return nil }

func (p *fakePub) messages() []*message.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*message.Message(nil), p.got...)
}

type tally struct {
	delivered, duplicates, lost int
	order                       bool
	backfill                    map[uint64]bool
}

// check dedupes by ID and checks that sequences 1..n arrived, each lane
// (backfill flag) in ascending order.
func check(t *testing.T, msgs []*message.Message, n uint64, skip map[uint64]bool) tally {
	t.Helper()
	seen := map[string]bool{}
	have := map[uint64]bool{}
	tl := tally{order: true, backfill: map[uint64]bool{}}
	last := map[string]uint64{}
	for _, m := range msgs {
		if seen[m.UUID] {
			tl.duplicates++
			continue
		}
		seen[m.UUID] = true
		lo, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaFirstSeq), 10, 64)
		hi, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaLastSeq), 10, 64)
		lane := m.Metadata.Get(outbound.MetaBackfill)
		if lo <= last[lane] {
			tl.order = false
			t.Errorf("lane backfill=%s: %s after sequence %d", lane, m.UUID, last[lane])
		}
		last[lane] = hi
		for s := lo; s <= hi; s++ {
			if have[s] {
				tl.duplicates++
			}
			have[s] = true
			tl.backfill[s] = lane == "true"
		}
	}
	for s := uint64(1); s <= n; s++ {
		if have[s] {
			tl.delivered++
		} else if !skip[s] {
			tl.lost++
		}
	}
	return tl
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newSink(t *testing.T, p *fakePub, dir string, mut func(*forward.Options)) *forward.Sink {
	t.Helper()
	o := forward.Options{
		Schema: schema, Edge: "site", Stream: t.Name()[len("Test"):], Dir: dir,
		RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond, MaxAttempts: 3, DrainTimeout: 200 * time.Millisecond,
		Log: quiet(),
	}
	o.Stream = "s"
	if mut != nil {
		mut(&o)
	}
	s, err := forward.New(&outbound.Publisher{Publisher: p, Topic: "t", Encoding: outbound.JSONBatch, BatchRows: 64}, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, s *forward.Sink, base, n int) {
	t.Helper()
	if err := s.Write(context.Background(), engine.Batch{Rec: rows(base, n)}); err != nil {
		t.Fatal(err)
	}
}

func TestOutageLiveFirst(t *testing.T) {
	for _, mode := range []forward.Mode{forward.LiveFirst, forward.FIFO} {
		t.Run(string(mode), func(t *testing.T) {
			p := &fakePub{}
			s := newSink(t, p, t.TempDir()+"/buf", func(o *forward.Options) { o.Mode = mode })
			defer s.Close(context.Background())
			n := 0
			for range 10 {
				write(t, s, n, 50)
				n += 50
			}
			eventually(t, 5*time.Second, "live rows", func() bool { return s.Buffer().Cursor() == uint64(n) })
			p.down.Store(true)
			outageFrom := uint64(n + 1)
			for range 20 {
				write(t, s, n, 50)
				n += 50
			}
			outageTo := uint64(n)
			p.down.Store(false)
			for range 10 {
				write(t, s, n, 50)
				n += 50
			}
			eventually(t, 10*time.Second, "everything delivered", func() bool { return s.Buffer().Cursor() == uint64(n) })
			tl := check(t, p.messages(), uint64(n), nil)
			for seq := outageFrom; seq <= outageTo; seq++ {
				if !tl.backfill[seq] {
					t.Fatalf("row %d written during the outage has backfill=false", seq)
				}
			}
			t.Logf("%s: accepted %d, delivered %d, duplicates %d, lost %d, publish calls %d", mode, n, tl.delivered, tl.duplicates, tl.lost, p.calls.Load())
			if tl.lost != 0 {
				t.Fatal("rows lost")
			}
		})
	}
}

func TestPoison(t *testing.T) {
	// Batches of 100 rows are cut into messages of 64 (batch_rows): 101-164
	// and 165-200 come from the second batch.
	p := &fakePub{reject: func(m *message.Message) bool { return m.Metadata.Get(outbound.MetaFirstSeq) == "165" }}
	s := newSink(t, p, t.TempDir()+"/buf", nil)
	defer s.Close(context.Background())
	// Append while the link is down so that rows go through the backlog
	// lane in big entries.
	n := 0
	for range 8 {
		write(t, s, n, 100)
		n += 100
	}
	eventually(t, 10*time.Second, "everything delivered or dead-lettered", func() bool { return s.Buffer().Cursor() == uint64(n) })
	dead := s.Buffer().DeadLetters()
	if len(dead) != 1 || dead[0].First != 165 || dead[0].Last != 200 {
		t.Fatalf("dead letters %+v, want 165-200", dead)
	}
	skip := map[uint64]bool{}
	for q := dead[0].First; q <= dead[0].Last; q++ {
		skip[q] = true
	}
	tl := check(t, p.messages(), uint64(n), skip)
	m := s.Metrics()
	t.Logf("accepted %d, delivered %d, dead-lettered %d, duplicates %d, lost %d", n, tl.delivered, m.DeadLetterRows, tl.duplicates, tl.lost)
	if tl.lost != 0 || m.DeadLetterRows != int64(dead[0].Last-dead[0].First+1) {
		t.Fatal("poison handling wrong")
	}
}

func TestQuotaPolicies(t *testing.T) {
	for _, pol := range []buffer.Policy{buffer.RejectNew, buffer.DropOldest, buffer.Downsample} {
		t.Run(pol.String(), func(t *testing.T) {
			p := &fakePub{}
			p.down.Store(true)
			s := newSink(t, p, t.TempDir()+"/buf", func(o *forward.Options) {
				o.Buffer.MaxBytes = 64 << 10
				o.Buffer.SegmentBytes = 8 << 10
				o.Buffer.Policy = pol
			})
			defer s.Close(context.Background())
			n := 0
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			var werr error
			for range 200 {
				if werr = s.Write(ctx, engine.Batch{Rec: rows(n, 50)}); werr != nil {
					break
				}
				n += 50
			}
			m := s.Metrics()
			switch pol {
			case buffer.RejectNew:
				if werr == nil || m.FullWaits == 0 || m.Dropped["quota"] != 0 {
					t.Fatalf("reject_new: err %v, metrics %+v", werr, m)
				}
			default:
				if werr != nil || m.Dropped["quota"] == 0 {
					t.Fatalf("%s: err %v, dropped %v", pol, werr, m.Dropped)
				}
			}
			p.down.Store(false)
			eventually(t, 10*time.Second, "delivery", func() bool { return s.Buffer().Cursor() == uint64(n) })
			tl := check(t, p.messages(), uint64(n), nil)
			t.Logf("%s: accepted %d, delivered %d, duplicates %d, lost %d (reported dropped %d), full waits %d", pol, n, tl.delivered, tl.duplicates, tl.lost, m.Dropped["quota"], m.FullWaits)
			// Rows the forwarder had already read when their file was
			// dropped may still be delivered: lost <= reported.
			if int64(tl.lost) > m.Dropped["quota"] || (pol == buffer.RejectNew && tl.lost != 0) {
				t.Fatalf("lost %d rows, %d reported dropped", tl.lost, m.Dropped["quota"])
			}
		})
	}
}

func TestDropAlert(t *testing.T) {
	alerts := &fakePub{}
	sh := engine.NewShared() // the sinks of one run
	as, err := forward.New(&outbound.Publisher{Publisher: alerts, Topic: "a", Encoding: outbound.JSON}, forward.Options{
		Schema: engine.AlertSchema, Edge: "site", Stream: "alerts", Dir: t.TempDir() + "/alerts", Log: quiet(), Shared: sh,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close(context.Background())
	p := &fakePub{}
	p.down.Store(true)
	s := newSink(t, p, t.TempDir()+"/buf", func(o *forward.Options) {
		o.Buffer.MaxBytes = 32 << 10
		o.Buffer.SegmentBytes = 4 << 10
		o.Buffer.Policy = buffer.DropOldest
		o.Shared = sh
	})
	defer s.Close(context.Background())
	for i := range 100 {
		write(t, s, i*50, 50)
	}
	eventually(t, 5*time.Second, "drop alert", func() bool { return len(alerts.messages()) > 0 })
	m := alerts.messages()[0]
	t.Logf("alert %s: %s", m.UUID, m.Payload)
}
