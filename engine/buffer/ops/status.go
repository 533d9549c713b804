package ops

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// Status is the backlog summary of a buffer directory.
type Status struct {
	Dir    string    `json:"dir"`
	Time   time.Time `json:"time"`
	Schema string    `json:"schema,omitempty"`
	// Edge and Stream are the identity the rows are published under.
	Edge   string `json:"edge,omitempty"`
	Stream string `json:"stream,omitempty"`
	// Cursor is the highest delivered sequence; NextSeq the sequence the
	// next row gets.
	Cursor  uint64 `json:"cursor"`
	NextSeq uint64 `json:"next_seq"`
	// Backlog: undelivered rows and the files holding them.
	BacklogRows  int64 `json:"backlog_rows"`
	BacklogBytes int64 `json:"backlog_bytes"`
	BacklogFiles int   `json:"backlog_files"`
	// OldestSeq, OldestEventTime and OldestAppend describe the oldest
	// undelivered rows; Age is Time minus OldestEventTime (or minus
	// OldestAppend when the rows have no event time).
	OldestSeq       uint64    `json:"oldest_seq,omitempty"`
	OldestEventTime time.Time `json:"oldest_event_time,omitzero"`
	OldestAppend    time.Time `json:"oldest_append,omitzero"`
	AgeSeconds      float64   `json:"age_seconds"`
	// Files on disk.
	Segments        int   `json:"segments"`
	SegmentBytes    int64 `json:"segment_bytes"`
	WALFiles        int   `json:"wal_files"`
	WALBytes        int64 `json:"wal_bytes"`
	DeadLetters     int   `json:"dead_letters"`
	DeadLetterRows  int64 `json:"dead_letter_rows"`
	DeadLetterBytes int64 `json:"dead_letter_bytes"`
	Quarantined     int   `json:"quarantined"`
	// Lost counts rows the manifest records as dropped or lost above the
	// cursor.
	DroppedRows int64 `json:"dropped_rows"`
	// Problems lists damage Open would repair (see Inspect).
	Problems []string `json:"problems,omitempty"`
	// Rate is set when a previous sample allows it.
	Rate *Rate `json:"rate,omitempty"`
}

// Rate compares two samples of a buffer.
type Rate struct {
	// OverSeconds is the time between the samples.
	OverSeconds float64 `json:"over_seconds"`
	// DrainRowsPerSec is the cursor's advance per second; InflowRowsPerSec
	// the appended rows per second.
	DrainRowsPerSec  float64 `json:"drain_rows_per_sec"`
	InflowRowsPerSec float64 `json:"inflow_rows_per_sec"`
	// ETASeconds is the backlog over the net drain rate; absent when the
	// backlog does not shrink.
	ETASeconds float64 `json:"eta_seconds,omitempty"`
}

// Sample is what a rate needs from a status; it is kept between runs.
type Sample struct {
	Dir     string    `json:"dir"`
	Time    time.Time `json:"time"`
	Cursor  uint64    `json:"cursor"`
	NextSeq uint64    `json:"next_seq"`
}

// Sample returns the sample of s.
func (s *Status) Sample() Sample {
	return Sample{Dir: s.Dir, Time: s.Time, Cursor: s.Cursor, NextSeq: s.NextSeq}
}

// StatusOf summarises an inspection taken at now.
func StatusOf(in *buffer.Inspection, now time.Time) *Status {
	s := &Status{Dir: in.Dir, Time: now.UTC(), Cursor: in.Cursor, NextSeq: in.NextSeq, Quarantined: len(in.Quarantine)}
	if in.Schema != nil {
		s.Schema = in.Schema.String()
	}
	if in.Meta != nil {
		s.Edge, s.Stream = in.Meta.Edge, in.Meta.Stream
	}
	oldest := func(seq uint64, t, appended time.Time) {
		if seq != 0 && (s.OldestSeq == 0 || seq < s.OldestSeq) {
			s.OldestSeq = seq
		}
		if !t.IsZero() && (s.OldestEventTime.IsZero() || t.Before(s.OldestEventTime)) {
			s.OldestEventTime = t
		}
		if !appended.IsZero() && (s.OldestAppend.IsZero() || appended.Before(s.OldestAppend)) {
			s.OldestAppend = appended
		}
	}
	for _, g := range in.Segments {
		if !g.Present {
			continue
		}
		s.Segments++
		s.SegmentBytes += g.DiskBytes
		if g.Listed && g.Undelivered > 0 && g.State != disk.SegBadSize {
			s.BacklogRows += g.Undelivered
			s.BacklogBytes += g.DiskBytes
			s.BacklogFiles++
			oldest(max(g.First, in.Cursor+1), g.MinTime, g.Written)
		}
	}
	for _, w := range in.WAL {
		s.WALFiles++
		s.WALBytes += w.Bytes
		if w.Pending > 0 {
			s.BacklogRows += w.Pending
			s.BacklogBytes += w.Bytes
			s.BacklogFiles++
			oldest(w.PendingFirst, w.PendingMinTime, w.OldestAppend)
		}
	}
	for _, d := range in.DeadLetters {
		if d.Present {
			s.DeadLetters++
			s.DeadLetterRows += d.Rows
			s.DeadLetterBytes += d.DiskBytes
		}
	}
	for _, r := range in.Removed {
		if r.Kind == "data" {
			s.DroppedRows += int64(r.Rows)
		}
	}
	switch {
	case !s.OldestEventTime.IsZero():
		s.AgeSeconds = max(0, now.Sub(s.OldestEventTime).Seconds())
	case !s.OldestAppend.IsZero():
		s.AgeSeconds = max(0, now.Sub(s.OldestAppend).Seconds())
	}
	s.Problems = Problems(in)
	return s
}

// Problems lists, one line each, the damage Open would repair.
func Problems(in *buffer.Inspection) []string {
	var out []string
	if in.CursorProblem != "" {
		out = append(out, fmt.Sprintf("cursor: %s (read as 0: delivered rows still on disk are sent again)", in.CursorProblem))
	}
	if in.Manifest.Problem != "" {
		out = append(out, fmt.Sprintf("manifest at offset %d: %s", in.Manifest.Offset, in.Manifest.Problem))
	}
	for _, w := range in.WAL {
		for _, d := range w.Damage {
			out = append(out, d.Error())
		}
		if w.TornAt >= 0 {
			out = append(out, fmt.Sprintf("%s: torn tail at offset %d (%d bytes)", w.Path, w.TornAt, w.TornBytes))
		}
	}
	for _, m := range in.Missing {
		out = append(out, m.Error())
	}
	for _, g := range append(append([]disk.SegmentState(nil), in.Segments...), in.DeadLetters...) {
		switch g.State {
		case disk.SegBadSize:
			out = append(out, fmt.Sprintf("%s: size %d, manifest says %d", g.Path, g.DiskBytes, g.Bytes))
		case disk.SegBadCRC:
			out = append(out, fmt.Sprintf("%s: file checksum mismatch", g.Path))
		case disk.SegMissing:
			out = append(out, fmt.Sprintf("%s: listed in the manifest but missing", g.Path))
		}
	}
	return out
}

// WithRate sets s.Rate from an earlier sample of the same directory. It
// does nothing when prev is not earlier or the counters went backwards
// (the buffer was replaced).
func (s *Status) WithRate(prev Sample) {
	dt := s.Time.Sub(prev.Time).Seconds()
	if prev.Dir != s.Dir || dt <= 0 || s.Cursor < prev.Cursor || s.NextSeq < prev.NextSeq {
		return
	}
	r := &Rate{
		OverSeconds:      dt,
		DrainRowsPerSec:  float64(s.Cursor-prev.Cursor) / dt,
		InflowRowsPerSec: float64(s.NextSeq-prev.NextSeq) / dt,
	}
	if net := r.DrainRowsPerSec - r.InflowRowsPerSec; net > 0 && s.BacklogRows > 0 {
		r.ETASeconds = float64(s.BacklogRows) / net
	}
	s.Rate = r
}

// ReadSample reads a sample saved by WriteSample; ok is false when there
// is none.
func ReadSample(path string) (Sample, bool) {
	var smp Sample
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &smp) != nil {
		return Sample{}, false
	}
	return smp, true
}

// WriteSample saves a sample (best effort: a status works without it).
func WriteSample(path string, smp Sample) error {
	data, err := json.Marshal(smp)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteText writes the status for people.
func (s *Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
	p("buffer", "%s", s.Dir)
	if s.Edge != "" || s.Stream != "" {
		p("identity", "%s/%s (message IDs %s/%s/<sequence>)", s.Edge, s.Stream, s.Edge, s.Stream)
	}
	if s.Schema != "" {
		p("schema", "%s", s.Schema)
	}
	p("cursor", "%d (next sequence %d)", s.Cursor, s.NextSeq)
	p("backlog", "%d rows, %s in %d files", s.BacklogRows, Bytes(s.BacklogBytes), s.BacklogFiles)
	if s.BacklogRows > 0 {
		p("oldest", "sequence %d", s.OldestSeq)
		if !s.OldestEventTime.IsZero() {
			p("oldest event time", "%s (%s ago)", s.OldestEventTime.Format(time.RFC3339), Dur(s.AgeSeconds))
		} else if !s.OldestAppend.IsZero() {
			p("oldest append", "%s (%s ago)", s.OldestAppend.Format(time.RFC3339), Dur(s.AgeSeconds))
		}
	}
	p("segments", "%d, %s", s.Segments, Bytes(s.SegmentBytes))
	p("wal", "%d files, %s", s.WALFiles, Bytes(s.WALBytes))
	p("dead letters", "%d segments, %d rows, %s", s.DeadLetters, s.DeadLetterRows, Bytes(s.DeadLetterBytes))
	p("quarantined", "%d files", s.Quarantined)
	if s.DroppedRows > 0 {
		p("dropped or lost", "%d rows above the cursor (see inspect)", s.DroppedRows)
	}
	if r := s.Rate; r != nil {
		p("drain", "%.0f rows/s, inflow %.0f rows/s (over %s)", r.DrainRowsPerSec, r.InflowRowsPerSec, Dur(r.OverSeconds))
		if r.ETASeconds > 0 {
			p("eta", "%s", Dur(r.ETASeconds))
		} else if s.BacklogRows > 0 {
			p("eta", "none: the backlog is not shrinking")
		}
	} else {
		p("drain", "unknown (run status again later, or use --interval)")
	}
	for _, pr := range s.Problems {
		p("problem", "%s (run `sluice buffer repair`)", pr)
	}
	return tw.Flush()
}

// Bytes renders a byte count.
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Dur renders seconds for people (see Age).
func Dur(sec float64) string {
	if math.IsNaN(sec) || math.Abs(sec) > float64(math.MaxInt64/int64(time.Second)) {
		return "a very long time"
	}
	return Age(time.Duration(sec * float64(time.Second)))
}

// Age renders a duration for people with its two largest units, such as
// 2y 335d, 3d 4h, 5h 7m, 12m 5s, 45s or 800ms (a year is 365 days).
func Age(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	const day = 24 * time.Hour
	const year = 365 * day
	units := []struct {
		size time.Duration
		name string
	}{{year, "y"}, {day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	for i, u := range units {
		if d < u.size {
			continue
		}
		s := fmt.Sprintf("%s%d%s", sign, d/u.size, u.name)
		if i+1 < len(units) {
			if rest := d % u.size / units[i+1].size; rest > 0 {
				s += fmt.Sprintf(" %d%s", rest, units[i+1].name)
			}
		}
		return s
	}
	return fmt.Sprintf("%s%dms", sign, d/time.Millisecond)
}

// nowFunc is the clock of reports.
var nowFunc = time.Now
