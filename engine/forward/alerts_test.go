package forward_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// alertSink opens a sink carrying alerts, publishing to p, in the run of
// sh.
func alertSink(t *testing.T, p *fakePub, sh *engine.Shared, mut func(*forward.Options)) *forward.Sink {
	t.Helper()
	o := forward.Options{Schema: engine.AlertSchema, Edge: "site", Stream: "alerts", Dir: t.TempDir() + "/alerts",
		Log: quiet(), Shared: sh, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond, DrainTimeout: 2 * time.Second}
	if mut != nil {
		mut(&o)
	}
	s, err := forward.New(&outbound.Publisher{Publisher: p, Topic: "a", Encoding: outbound.JSON}, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// alertRows decodes the alert messages: rule, state and value by alert id.
type alertRow struct {
	id, rule, state, typ, severity string
	value                          float64
}

func alertRows(t *testing.T, msgs []*message.Message) []alertRow {
	t.Helper()
	var out []alertRow
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.UUID] {
			continue
		}
		seen[m.UUID] = true
		var v struct {
			Measurepoints map[string]any `json:"measurepoints"`
		}
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			t.Fatal(err)
		}
		mp := v.Measurepoints
		r := alertRow{}
		r.id, _ = mp["id"].(string)
		r.rule, _ = mp["rule"].(string)
		r.state, _ = mp["state"].(string)
		r.typ, _ = mp["type"].(string)
		r.severity, _ = mp["severity"].(string)
		r.value, _ = mp["value"].(float64)
		out = append(out, r)
	}
	return out
}

// TestDropAlertsDuringShutdown: sinks close concurrently when a run ends.
// Drops a sink makes while others are closing (here: while the alert sink
// has been asked to close) still raise their alerts — the alert sink used
// to leave the alert route before draining, and the drops went unraised.
func TestDropAlertsDuringShutdown(t *testing.T) {
	sh := engine.NewShared()
	ap := &fakePub{}
	as := alertSink(t, ap, sh, nil)
	var mu sync.Mutex
	var drops []buffer.Drop
	p := &fakePub{}
	p.down.Store(true)
	s := newSink(t, p, t.TempDir()+"/buf", func(o *forward.Options) {
		o.Buffer.MaxBytes = 32 << 10
		o.Buffer.SegmentBytes = 4 << 10
		o.Buffer.Policy = buffer.DropOldest
		o.Shared = sh
		o.Buffer.OnDrop = func(d buffer.Drop) { mu.Lock(); drops = append(drops, d); mu.Unlock() }
	})
	// The alert sink is asked to close first, as the graph may do.
	closed := make(chan error, 1)
	go func() { closed <- as.Close(context.Background()) }()
	for i := range 100 {
		write(t, s, i*50, 50)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(drops) == 0 {
		t.Fatal("nothing dropped")
	}
	var rows float64
	n := 0
	for _, a := range alertRows(t, ap.messages()) {
		if a.rule == forward.DropAlertRule {
			n++
			rows += a.value
		}
	}
	var want float64
	for _, d := range drops {
		want += float64(d.Rows)
	}
	if n != len(drops) || rows != want {
		t.Fatalf("%d drops of %v rows, %d alerts for %v rows", len(drops), want, n, rows)
	}
}

// TestDropsCountOnlyUndeliveredRows: rows the live lane delivered ahead of
// the cursor (the backlog lane is held back) and whose files a quota then
// drops were reported as dropped although delivered. Every drop now
// reports only rows that never left: the reported total equals the rows
// that neither reached the broker nor are still in the buffer.
func TestDropsCountOnlyUndeliveredRows(t *testing.T) {
	var mu sync.Mutex
	var drops []buffer.Drop
	p := &fakePub{}
	p.down.Store(true)
	dir := t.TempDir() + "/buf"
	s := newSink(t, p, dir, func(o *forward.Options) {
		o.Buffer.MaxBytes = 40 << 10
		o.Buffer.SegmentBytes = 8 << 10
		o.Buffer.Policy = buffer.DropOldest
		// One backlog run may go out, then the lane waits for hours.
		o.BackfillRate = 0.0001
		o.Buffer.OnDrop = func(d buffer.Drop) { mu.Lock(); drops = append(drops, d); mu.Unlock() }
	})
	n := 0
	for range 10 {
		write(t, s, n, 50)
		n += 50
	}
	backlog := n
	p.down.Store(false)
	eventually(t, 5*time.Second, "the link back and the live lane open", func() bool {
		m := s.Metrics()
		return m.LinkUp && m.LiveLaneOpen
	})
	// Live rows, each batch confirmed before the next is written: nothing
	// is in flight when an append drops a file.
	for range 120 {
		write(t, s, n, 50)
		n += 50
		want := uint64(n)
		eventually(t, 5*time.Second, "live delivery", func() bool {
			for _, m := range p.messages() {
				if m.Metadata.Get(outbound.MetaLastSeq) == strconv.FormatUint(want, 10) {
					return true
				}
			}
			return false
		})
	}
	s.Close(context.Background())
	delivered := map[uint64]bool{}
	for _, m := range p.messages() {
		lo, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaFirstSeq), 10, 64)
		hi, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaLastSeq), 10, 64)
		for q := lo; q <= hi; q++ {
			delivered[q] = true
		}
	}
	// Rows neither delivered nor dropped are still in the buffer.
	b, err := buffer.Open(dir, buffer.Options{Schema: schema, ReadOnly: true, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		e, err := b.Next(ctx)
		if err != nil {
			break
		}
		for q := e.First; q <= e.Last(); q++ {
			if !delivered[q] {
				kept++
			}
		}
		e.Rec.Release()
	}
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	var reported int64
	liveFiles := 0
	for _, d := range drops {
		reported += d.Rows
		if d.Last > uint64(backlog) {
			liveFiles++
		}
	}
	lost := n - len(delivered) - kept
	t.Logf("accepted %d, delivered %d, kept undelivered %d, lost %d; %d drops (%d of files with live rows) reporting %d rows",
		n, len(delivered), kept, lost, len(drops), liveFiles, reported)
	if liveFiles == 0 {
		t.Fatal("no file of live rows was dropped: the test proves nothing")
	}
	if reported != int64(lost) {
		t.Fatalf("reported %d rows dropped, %d were", reported, lost)
	}
}

// TestDiskFullHoldsBackAndHeals fills the disk under a sink whose link is
// down: writes wait (they used to fail and stop the pipeline), a disk-full
// alert is raised; once the link returns the backlog drains, space frees by
// itself, the writes complete and the alert clears.
func TestDiskFullHoldsBackAndHeals(t *testing.T) {
	sh := engine.NewShared()
	ap := &fakePub{}
	fs := faultfs.New()
	as := alertSink(t, ap, sh, func(o *forward.Options) { o.Buffer.FS = fs; o.Dir = "/alerts" })
	defer as.Close(context.Background())
	p := &fakePub{}
	p.down.Store(true)
	s := newSink(t, p, "/buf", func(o *forward.Options) {
		o.Buffer.FS = fs
		o.Buffer.SegmentBytes = 16 << 10
		o.Shared = sh
		o.DiskFullClearAfter = 100 * time.Millisecond
	})
	defer s.Close(context.Background())
	n := 0
	for range 20 {
		write(t, s, n, 50)
		n += 50
	}
	fs.SetCapacity(fs.Used() + 8<<10)
	done := make(chan int, 1)
	go func() {
		k := n
		for range 40 {
			if err := s.Write(context.Background(), engine.Batch{Rec: rows(k, 50)}); err != nil {
				t.Error(err)
				break
			}
			k += 50
		}
		done <- k
	}()
	eventually(t, 5*time.Second, "a write held back by the full disk", func() bool { return s.Metrics().FullWaits > 0 })
	select {
	case <-done:
		t.Fatal("every write went through on a full disk")
	default:
	}
	p.down.Store(false)
	var total int
	select {
	case total = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("writes still held back after the link returned")
	}
	eventually(t, 10*time.Second, "everything delivered", func() bool { return s.Buffer().Cursor() == uint64(total) })
	tl := check(t, p.messages(), uint64(total), nil)
	if tl.lost != 0 {
		t.Fatalf("%d rows lost", tl.lost)
	}
	var raised, cleared bool
	eventually(t, 10*time.Second, "disk-full alert raised and cleared", func() bool {
		raised, cleared = false, false
		for _, a := range alertRows(t, ap.messages()) {
			if a.rule == forward.DiskFullAlertRule {
				raised = raised || a.state == engine.AlertRaised
				cleared = cleared || a.state == engine.AlertCleared
			}
		}
		return raised && cleared
	})
}

// TestDiskFullAlertOnePerEpisode fills and frees the disk under a sink
// five times in a row: one disk-full alert is raised for the episode and
// cleared once (here when the sink closes, the clearing delay being long).
// Every refused batch used to raise and clear an alert of its own.
func TestDiskFullAlertOnePerEpisode(t *testing.T) {
	sh := engine.NewShared()
	ap := &fakePub{}
	as := alertSink(t, ap, sh, nil)
	defer as.Close(context.Background())
	fs := faultfs.New()
	s := newSink(t, &fakePub{}, "/buf", func(o *forward.Options) {
		o.Buffer.FS = fs
		o.Shared = sh
		o.DiskFullClearAfter = time.Hour
	})
	n := 0
	for cycle := range 5 {
		write(t, s, n, 50)
		n += 50
		waits := s.Metrics().FullWaits
		fs.SetCapacity(fs.Used())
		done := make(chan error, 1)
		go func(k int) { done <- s.Write(context.Background(), engine.Batch{Rec: rows(k, 2000)}) }(n)
		n += 2000
		eventually(t, 5*time.Second, "a write held back by the full disk", func() bool { return s.Metrics().FullWaits > waits })
		fs.SetCapacity(0)
		if err := <-done; err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var raised, cleared int
	eventually(t, 5*time.Second, "the disk-full alert cleared", func() bool {
		ids, raised, cleared = nil, 0, 0
		for _, a := range alertRows(t, ap.messages()) {
			if a.rule == forward.DiskFullAlertRule {
				ids = append(ids, a.id)
				if a.state == engine.AlertRaised {
					raised++
				} else {
					cleared++
				}
			}
		}
		return cleared > 0
	})
	for _, a := range alertRows(t, ap.messages()) {
		if a.rule == forward.DiskFullAlertRule && (a.typ != "resource" || a.severity != "critical") {
			t.Fatalf("disk-full alert %+v: want type resource, severity critical", a)
		}
	}
	if raised != 1 || cleared != 1 || ids[0] != ids[1] {
		t.Fatalf("%d raised and %d cleared disk-full alerts (%v), want one of each for the one episode", raised, cleared, ids)
	}
}

// TestCorruptionRaisesAlert: rows lost to a damaged buffer file (here a WAL
// file cut below what it had synced) raise a buffer_corruption alert with
// the lost range, beside the report and the counter.
func TestCorruptionRaisesAlert(t *testing.T) {
	sh := engine.NewShared()
	ap := &fakePub{}
	as := alertSink(t, ap, sh, nil)
	defer as.Close(context.Background())
	p := &fakePub{}
	p.down.Store(true)
	dir := t.TempDir() + "/buf"
	s := newSink(t, p, dir, func(o *forward.Options) { o.Shared = sh })
	for i := range 4 {
		write(t, s, i*10, 10)
	}
	s.Close(context.Background())
	wal := dir + "/wal/00000001.wal"
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(wal, fi.Size()*6/10); err != nil {
		t.Fatal(err)
	}
	s = newSink(t, p, dir, func(o *forward.Options) { o.Shared = sh })
	defer s.Close(context.Background())
	eventually(t, 5*time.Second, "the corruption alert", func() bool {
		for _, a := range alertRows(t, ap.messages()) {
			if a.rule == forward.LossAlertRule && a.value > 0 {
				if a.typ != "data_loss" || a.severity != "major" || !strings.Contains(a.id, "-") {
					t.Fatalf("loss alert %+v: want type data_loss, severity major and the lost range in its id", a)
				}
				return true
			}
		}
		return false
	})
}

// TestAlertSinkReportsItsOwnLoss: a sink carrying alerts whose own buffer
// finds lost rows while opening raised the alert into itself before its
// buffer was set (a nil dereference). The alert now waits for the buffer
// and goes out with the rest.
func TestAlertSinkReportsItsOwnLoss(t *testing.T) {
	sh := engine.NewShared()
	ap := &fakePub{}
	ap.down.Store(true)
	dir := t.TempDir() + "/alerts"
	as := alertSink(t, ap, sh, func(o *forward.Options) { o.Dir = dir })
	for i := range 5 {
		rec := alertRecordForTest(i)
		if err := as.Write(context.Background(), engine.Batch{Rec: rec}); err != nil {
			t.Fatal(err)
		}
	}
	as.Close(context.Background())
	if err := os.Truncate(dir+"/wal/00000001.wal", 32); err != nil {
		t.Fatal(err)
	}
	ap.down.Store(false)
	as = alertSink(t, ap, sh, func(o *forward.Options) { o.Dir = dir })
	defer as.Close(context.Background())
	eventually(t, 5*time.Second, "the loss alert", func() bool {
		for _, a := range alertRows(t, ap.messages()) {
			if a.rule == forward.LossAlertRule && a.value == 5 {
				return true
			}
		}
		return false
	})
}

func alertRecordForTest(i int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, engine.AlertSchema)
	defer rb.Release()
	for j, f := range engine.AlertSchema.Fields {
		switch f.Type {
		case engine.Timestamp:
			rb.Timestamp(j).Append(arrow.Timestamp(1_700_000_000_000 + int64(i)))
		case engine.String:
			rb.String(j).Append(fmt.Sprintf("%s-%d", f.Name, i))
		case engine.Float64:
			rb.Float64(j).Append(float64(i))
		}
	}
	rb.RowDone()
	return rb.NewRecord()
}
