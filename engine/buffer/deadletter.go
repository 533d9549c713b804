package buffer

import (
	"fmt"
	"os"
	"path"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// SegmentInfo describes a segment file.
type SegmentInfo = disk.SegmentInfo

// Segments lists the sealed data segments in sequence order.
func (b *Buffer) Segments() []SegmentInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SegmentInfo, len(b.segs))
	for i, e := range b.segs {
		out[i] = e.Info(b.cursor)
	}
	return out
}

// DeadLetters lists the dead-letter segments in sequence order.
func (b *Buffer) DeadLetters() []SegmentInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SegmentInfo, len(b.dead))
	for i, e := range b.dead {
		out[i] = e.Info(b.cursor)
	}
	return out
}

// DeadLetter stores rows that the sink rejected permanently, with the
// rejection, in a dead-letter segment (docs/format/buffer.md 7), so that
// the forwarder can Ack past them. first is the sequence of the first row
// of rec (as returned by Next). DeadLetter does not take ownership of rec.
// The segment is durable and listed in the manifest when DeadLetter
// returns; it counts toward the quota but is never evicted by it.
func (b *Buffer) DeadLetter(first uint64, rec arrow.RecordBatch, cause error) error {
	if b.opts.ReadOnly {
		return ErrReadOnly
	}
	n := rec.NumRows()
	if n == 0 {
		return nil
	}
	if s := rec.Schema(); s != b.arrow && !s.Equal(b.arrow) {
		return ErrSchema
	}
	last := first + uint64(n) - 1
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if first == 0 || last >= b.nextSeq {
		next := b.nextSeq
		b.mu.Unlock()
		return fmt.Errorf("buffer: dead letter %d-%d outside the appended sequences 1-%d", first, last, next-1)
	}
	b.mu.Unlock()
	l, err := disk.NewLayout(b.opts.Schema, true)
	if err != nil {
		return err
	}
	msg := "rejected"
	if cause != nil {
		msg = cause.Error()
	}
	e := disk.SegEntry{Kind: disk.KindDead, First: first, Last: last, Rows: uint64(n), Written: b.opts.Now().UnixMilli()}
	e.TMin, e.TMax, e.HasTime = disk.TimeRange(rec, b.timeIdx)
	rel := e.Rel()
	tmp := b.path(rel) + ".tmp"
	f, err := b.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("buffer: create %s: %w", tmp, err)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = b.fs.Remove(tmp)
		return fmt.Errorf("buffer: write %s: %w", rel, err)
	}
	cw := &disk.CRCWriter{W: f}
	sw := disk.NewSegWriter(cw, l, b.codec, first, last, nil)
	if err := sw.Write(rec, first, []uint64{first}, msg); err != nil {
		return fail(err)
	}
	if err := sw.Close(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = b.fs.Remove(tmp)
		return fmt.Errorf("buffer: write %s: %w", rel, err)
	}
	if err := b.fs.Rename(tmp, b.path(rel)); err != nil {
		_ = b.fs.Remove(tmp)
		return fmt.Errorf("buffer: publish %s: %w", rel, err)
	}
	if err := b.fs.SyncDir(path.Dir(b.path(rel))); err != nil {
		return fmt.Errorf("buffer: publish %s: %w", rel, err)
	}
	e.Bytes, e.CRC = cw.N, cw.CRC
	if err := b.man.Write(disk.EncodeAdd(e)); err != nil {
		return err
	}
	b.mu.Lock()
	b.dead = slices.DeleteFunc(b.dead, func(x disk.SegEntry) bool {
		if x.First == first {
			b.deadBytes -= x.Bytes
			b.quota.used.Add(-x.Bytes)
			return true
		}
		return false
	})
	b.addSegLocked(e)
	b.mu.Unlock()
	b.quota.used.Add(e.Bytes)
	return nil
}
