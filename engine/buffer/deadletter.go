package buffer

import (
	"fmt"
	"os"
	"path"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// SegmentInfo describes a segment file.
type SegmentInfo struct {
	// Path is relative to the buffer directory.
	Path        string    `json:"path"`
	First       uint64    `json:"first"`
	Last        uint64    `json:"last"`
	Rows        int64     `json:"rows"`
	Bytes       int64     `json:"bytes"`
	MinTime     time.Time `json:"min_time,omitzero"`
	MaxTime     time.Time `json:"max_time,omitzero"`
	Written     time.Time `json:"written"`
	Checksum    uint32    `json:"crc32c"`
	Undelivered int64     `json:"undelivered"`
}

func (b *Buffer) info(e segEntry) SegmentInfo {
	si := SegmentInfo{
		Path: e.rel(), First: e.first, Last: e.last, Rows: int64(e.rows), Bytes: e.bytes,
		Written: time.UnixMilli(e.written).UTC(), Checksum: e.crc,
	}
	if e.hasTime {
		si.MinTime, si.MaxTime = time.UnixMilli(e.tmin).UTC(), time.UnixMilli(e.tmax).UTC()
	}
	if e.kind == kindData && e.last > b.cursor {
		si.Undelivered = int64(e.last - max(e.first, b.cursor+1) + 1)
	}
	return si
}

// Segments lists the sealed data segments in sequence order.
func (b *Buffer) Segments() []SegmentInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SegmentInfo, len(b.segs))
	for i, e := range b.segs {
		out[i] = b.info(e)
	}
	return out
}

// DeadLetters lists the dead-letter segments in sequence order.
func (b *Buffer) DeadLetters() []SegmentInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SegmentInfo, len(b.dead))
	for i, e := range b.dead {
		out[i] = b.info(e)
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
	l, err := newSegLayout(b.opts.Schema, true)
	if err != nil {
		return err
	}
	msg := "rejected"
	if cause != nil {
		msg = cause.Error()
	}
	e := segEntry{kind: kindDead, first: first, last: last, rows: uint64(n), written: b.opts.Now().UnixMilli()}
	e.tmin, e.tmax, e.hasTime = timeRange(rec, b.timeIdx)
	rel := e.rel()
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
	cw := &crcWriter{w: f}
	sw := newSegWriter(cw, l, b.opts.Schema, b.codec, first, last)
	if err := sw.write(rec, first, msg); err != nil {
		return fail(err)
	}
	if err := sw.close(); err != nil {
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
	e.bytes, e.crc = cw.n, cw.crc
	if err := b.man.write(encodeAdd(e)); err != nil {
		return err
	}
	b.mu.Lock()
	b.dead = slices.DeleteFunc(b.dead, func(x segEntry) bool {
		if x.first == first {
			b.deadBytes -= x.bytes
			b.quota.used.Add(-x.bytes)
			return true
		}
		return false
	})
	i, _ := slices.BinarySearchFunc(b.dead, first, func(x segEntry, s uint64) int {
		switch {
		case x.first < s:
			return -1
		case x.first > s:
			return 1
		}
		return 0
	})
	b.dead = slices.Insert(b.dead, i, e)
	b.deadBytes += e.bytes
	b.mu.Unlock()
	b.quota.used.Add(e.bytes)
	return nil
}
