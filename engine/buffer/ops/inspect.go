package ops

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// WriteInspection writes an inspection for people: the cursor and
// manifest, every segment, WAL file, dead-letter segment, removed range
// and quarantined file, then the problems found.
func WriteInspection(w io.Writer, in *buffer.Inspection) error {
	fmt.Fprintf(w, "buffer %s\n", in.Dir)
	if in.Schema != nil {
		fmt.Fprintf(w, "schema %s (from %s)\n", in.Schema, in.SchemaFrom)
	} else {
		fmt.Fprintln(w, "schema unknown (no readable segment or WAL record)")
	}
	fmt.Fprintf(w, "cursor %d, next sequence %d\n", in.Cursor, in.NextSeq)
	m := in.Manifest
	switch {
	case !m.Present:
		fmt.Fprintln(w, "manifest absent")
	default:
		fmt.Fprintf(w, "manifest %s, %d records, high %d", Bytes(m.Bytes), m.Records, m.High)
		if m.TornTail {
			fmt.Fprintf(w, ", torn tail at offset %d", m.Offset)
		}
		if m.Problem != "" {
			fmt.Fprintf(w, ", DAMAGED at offset %d: %s", m.Offset, m.Problem)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	segs := func(title string, list []disk.SegmentState) {
		fmt.Fprintf(tw, "\n%s (%d)\n", title, len(list))
		if len(list) == 0 {
			return
		}
		fmt.Fprintln(tw, "file\tfirst\tlast\trows\tundelivered\tbytes\tevent time\tchecksum\tstate\t")
		for _, g := range list {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%08x\t%s\t\n", g.Path, g.First, g.Last, g.Rows, g.Undelivered,
				g.DiskBytes, timeRange(g.MinTime, g.MaxTime), g.Checksum, segState(g))
		}
	}
	segs("segments", in.Segments)
	fmt.Fprintf(tw, "\nwal (%d)\n", len(in.WAL))
	if len(in.WAL) > 0 {
		fmt.Fprintln(tw, "file\tfirst\tlast\trecords\trows\tpending\tbytes\tevent time\tstate\t")
		for _, f := range in.WAL {
			state := "ok"
			switch {
			case f.NoHeader:
				state = "empty (removed on open)"
			case len(f.Damage) > 0:
				state = fmt.Sprintf("DAMAGED (%d places)", len(f.Damage))
			case f.TornAt >= 0:
				state = fmt.Sprintf("torn tail at offset %d", f.TornAt)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", f.Path, f.First, f.Last, f.Records, f.Rows, f.Pending, f.Bytes,
				timeRange(f.MinTime, f.MaxTime), state)
		}
	}
	segs("dead letters", in.DeadLetters)
	if len(in.Removed) > 0 {
		fmt.Fprintf(tw, "\nremoved ranges above the cursor (%d)\n", len(in.Removed))
		fmt.Fprintln(tw, "kind\tfirst\tlast\trows\treason\t")
		for _, r := range in.Removed {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", r.Kind, r.First, r.Last, r.Rows, r.Reason)
		}
	}
	fmt.Fprintf(tw, "\nquarantine (%d)\n", len(in.Quarantine))
	for _, q := range in.Quarantine {
		fmt.Fprintf(tw, "%s\t%d bytes\t%s\t\n", q.Name, q.Bytes, q.Modified.Format(time.RFC3339))
	}
	for _, t := range in.Temp {
		fmt.Fprintf(tw, "temporary file %s (removed on open)\n", t)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	probs := Problems(in)
	if len(probs) == 0 {
		fmt.Fprintln(w, "\nno damage found")
		return nil
	}
	fmt.Fprintf(w, "\n%d problem(s); `sluice buffer repair` fixes them:\n", len(probs))
	for _, p := range probs {
		fmt.Fprintf(w, "  %s\n", p)
	}
	return nil
}

func segState(g disk.SegmentState) string {
	s := g.State
	if g.State == disk.SegUnverified {
		s = "ok (checksum not read)"
	}
	if g.CoveredWAL && g.State != disk.SegOK && g.State != disk.SegUnverified {
		s += ", rows still in the WAL"
	}
	return s
}

func timeRange(lo, hi time.Time) string {
	if lo.IsZero() {
		return "-"
	}
	return lo.Format(time.RFC3339) + ".." + hi.Format(time.RFC3339)
}
