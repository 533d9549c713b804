package buffer

import (
	"time"
)

// Status is a snapshot of a buffer, for `sluice buffer status`.
type Status struct {
	Dir    string `json:"dir"`
	Schema string `json:"schema"`
	// Edge and Stream are the identity the rows are published under.
	Edge   string `json:"edge,omitempty"`
	Stream string `json:"stream,omitempty"`
	// Cursor is the highest delivered sequence; NextSeq the sequence the
	// next appended row gets.
	Cursor  uint64 `json:"cursor"`
	NextSeq uint64 `json:"next_seq"`
	// Backlog: undelivered rows, and the bytes and count of the files
	// holding them (WAL files and segments).
	BacklogRows     int64 `json:"backlog_rows"`
	BacklogBytes    int64 `json:"backlog_bytes"`
	BacklogSegments int   `json:"backlog_segments"`
	// OldestSeq and OldestEventTime describe the oldest undelivered rows
	// (zero when there are none or they carry no event time).
	OldestSeq       uint64    `json:"oldest_seq,omitempty"`
	OldestEventTime time.Time `json:"oldest_event_time,omitzero"`
	// Files on disk.
	WALFiles        int   `json:"wal_files"`
	WALBytes        int64 `json:"wal_bytes"`
	Segments        int   `json:"segments"`
	SegmentBytes    int64 `json:"segment_bytes"`
	DeadLetters     int   `json:"dead_letters"`
	DeadLetterRows  int64 `json:"dead_letter_rows"`
	DeadLetterBytes int64 `json:"dead_letter_bytes"`
	Quarantined     int   `json:"quarantined"`
	// Quota shared by this buffer (0: unlimited) and its use.
	QuotaBytes int64  `json:"quota_bytes"`
	QuotaUsed  int64  `json:"quota_used"`
	Policy     string `json:"policy"`
	Fsync      string `json:"fsync"`
	// Since open: rows and units dropped, bytes freed by drops, and
	// corruptions found.
	DroppedRows     int64 `json:"dropped_rows"`
	DroppedSegments int64 `json:"dropped_segments"`
	DroppedBytes    int64 `json:"dropped_bytes"`
	Corruptions     int64 `json:"corruptions"`
	// Failed holds the WAL failure that stops appends, if any; NoSpace is
	// set while appends fail because the disk is full.
	Failed  string `json:"failed,omitempty"`
	NoSpace bool   `json:"no_space,omitempty"`
}

// Status returns a snapshot of the buffer.
func (b *Buffer) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Status{
		Dir: b.dir, Schema: b.opts.Schema.String(), Edge: b.edge, Stream: b.stream,
		Cursor: b.cursor, NextSeq: b.nextSeq,
		Segments: len(b.segs), SegmentBytes: b.segBytes,
		WALFiles: len(b.wals), WALBytes: b.walBytes,
		DeadLetters: len(b.dead), DeadLetterBytes: b.deadBytes,
		Quarantined: b.quarantine,
		Fsync:       b.opts.Fsync.String(),
		DroppedRows: b.stats.rows, DroppedSegments: b.stats.units, DroppedBytes: b.stats.bytes,
		Corruptions: b.stats.corruptions,
	}
	if b.quota != nil {
		s.QuotaBytes, s.QuotaUsed, s.Policy = b.quota.Max(), b.quota.Used(), b.opts.Policy.String()
		if b.quota.share == 0 {
			s.Policy = b.quota.policy.String()
		}
	}
	if b.failed != nil {
		s.Failed = b.failed.Error()
	}
	s.NoSpace = b.noSpace
	for _, e := range b.dead {
		s.DeadLetterRows += int64(e.Rows)
	}
	var oldest int64
	hasOldest := false
	note := func(first, rows uint64, hasTime bool, tmin int64, bytes int64) {
		s.BacklogRows += int64(rows)
		s.BacklogBytes += bytes
		s.BacklogSegments++
		if s.OldestSeq == 0 || first < s.OldestSeq {
			s.OldestSeq = first
		}
		if hasTime && (!hasOldest || tmin < oldest) {
			oldest, hasOldest = tmin, true
		}
	}
	for _, e := range b.segs {
		if e.Last > b.cursor {
			first := max(e.First, b.cursor+1)
			note(first, e.Last-first+1, e.HasTime, e.TMin, e.Bytes)
		}
	}
	for _, w := range b.wals {
		var first, rows uint64
		hasTime, tmin := false, int64(0)
		for _, r := range w.recs {
			if r.Last() <= b.cursor {
				continue
			}
			f := max(r.First, b.cursor+1)
			if first == 0 {
				first = f
			}
			rows += r.Last() - f + 1
			if r.HasTime && (!hasTime || r.TMin < tmin) {
				tmin, hasTime = r.TMin, true
			}
		}
		if rows > 0 {
			note(first, rows, hasTime, tmin, w.size)
		}
	}
	if hasOldest {
		s.OldestEventTime = time.UnixMilli(oldest).UTC()
	}
	return s
}
