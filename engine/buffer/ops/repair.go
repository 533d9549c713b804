package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// Action is one thing repair did (or, in a dry run, would do).
type Action struct {
	// Action is truncate, quarantine, salvage, remove, adopt, rewrite,
	// reset or missing.
	Action string `json:"action"`
	File   string `json:"file"`
	// Offset is the byte offset of the damage, -1 for the whole file.
	Offset int64  `json:"offset"`
	Reason string `json:"reason,omitempty"`
	// Quarantined is where the file was moved.
	Quarantined string `json:"quarantined,omitempty"`
	// LostFirst and LostLast bound the rows lost (LostLast 0: unknown end).
	LostFirst uint64 `json:"lost_first,omitempty"`
	LostLast  uint64 `json:"lost_last,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
}

func (a Action) String() string {
	s := a.Action + " " + a.File
	if a.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", a.Offset)
	}
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	if a.Bytes > 0 {
		s += fmt.Sprintf(" (%d bytes)", a.Bytes)
	}
	if l := disk.LostText(a.LostFirst, a.LostLast); l != "" {
		s += "; " + l
	}
	if a.Quarantined != "" {
		s += "; moved to " + a.Quarantined
	}
	return s
}

// RepairOptions tune Repair.
type RepairOptions struct {
	// DryRun only reports what a repair would do.
	DryRun bool
	// NoVerify skips reading every row after opening (which checks the
	// segment checksums and WAL payloads, quarantining damage).
	NoVerify bool
	SchemaOptions
	// Progress, when set, is called while the rows are read with the rows
	// read, the backlog rows, and the share of the backlog's bytes read.
	Progress func(done, total, bytes int64)
	// Log receives the buffer's log (default: discarded).
	Log *slog.Logger
}

// RepairReport says what repair found and did.
type RepairReport struct {
	Dir     string   `json:"dir"`
	DryRun  bool     `json:"dry_run"`
	Actions []Action `json:"actions"`
	// Before and After summarise the buffer (After only after a repair).
	Before *Status `json:"before"`
	After  *Status `json:"after,omitempty"`
}

// Repair opens the buffer in dir as the engine would: torn WAL tails are
// truncated, damaged files quarantined (their valid records salvaged into
// segments), unlisted segments adopted or removed, the manifest rewritten.
// Unless NoVerify, it then reads every row once, which checks segment
// checksums and quarantines damaged segments. Nothing is delivered: the
// cursor does not move. With DryRun it only inspects and reports. The
// buffer must not be open in a running engine.
func Repair(dir string, opts RepairOptions) (*RepairReport, error) {
	in, err := buffer.Inspect(dir, buffer.InspectOptions{VerifyChecksums: !opts.NoVerify})
	if err != nil {
		return nil, err
	}
	rep := &RepairReport{Dir: dir, DryRun: opts.DryRun, Before: StatusOf(in, nowFunc())}
	if opts.DryRun {
		rep.Actions = planned(in)
		return rep, nil
	}
	if in.Schema == nil && len(in.WAL) == 0 && len(in.Segments) == 0 {
		// Nothing to open: remove the temporary files, report the rest
		// as not done.
		for _, tmp := range in.Temp {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(tmp))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return rep, fmt.Errorf("repair: %w", err)
			}
		}
		rep.Actions = tempActions(in)
		for _, a := range damageActions(in) {
			a.Reason += " (not done: the buffer holds no rows and records no schema)"
			rep.Actions = append(rep.Actions, a)
		}
		after, err := buffer.Inspect(dir, buffer.InspectOptions{})
		if err != nil {
			return rep, err
		}
		rep.After = StatusOf(after, nowFunc())
		return rep, nil
	}
	s, err := resolveSchema(in, opts.SchemaOptions)
	if err != nil {
		return nil, err
	}
	rec := &recorder{}
	var mu sync.Mutex
	var found []*buffer.CorruptionError
	base := opts.Log
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	b, err := buffer.Open(dir, buffer.Options{
		Schema: s, ManualSeal: true, IdleSeal: -1,
		Log: slog.New(teeHandler{rec, base.Handler()}),
		OnCorruption: func(ce *buffer.CorruptionError) {
			mu.Lock()
			found = append(found, ce)
			mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	var readErr error
	if !opts.NoVerify {
		readErr = drain(b, rep.Before.BacklogRows, rep.Before.BacklogBytes, opts.Progress)
	}
	if err := b.Close(); err != nil && readErr == nil {
		readErr = err
	}
	// What Open does from the reading alone (removals, truncations) is
	// what the reading planned; damage comes from the reports.
	for _, a := range planned(in) {
		if a.Action == "remove" || a.Action == "truncate" {
			rep.Actions = append(rep.Actions, a)
		}
	}
	for _, r := range rec.records() {
		rep.Actions = append(rep.Actions, r)
	}
	mu.Lock()
	for _, ce := range found {
		rep.Actions = append(rep.Actions, corruptionAction(ce))
	}
	mu.Unlock()
	after, err := buffer.Inspect(dir, buffer.InspectOptions{})
	if err != nil {
		return rep, err
	}
	rep.After = StatusOf(after, nowFunc())
	if readErr == nil && len(rep.After.Problems) > 0 {
		// A step could not be done (a full disk postpones sealing what
		// a damaged file holds): say so instead of reporting success.
		readErr = fmt.Errorf("repair: problems remain, run it again once they can be fixed (free disk space): %s", strings.Join(rep.After.Problems, "; "))
	}
	return rep, readErr
}

// drain reads every row once without acknowledging anything, telling
// progress (when set) how far it got of the rows and bytes of the backlog.
func drain(b *buffer.Buffer, rows, bytes int64, progress func(done, total, bytes int64)) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Next polls
	var done int64
	for {
		e, err := b.Next(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				if progress != nil {
					progress(done, max(done, rows), bytes)
				}
				return nil
			}
			return err
		}
		done += e.Rec.NumRows()
		e.Rec.Release()
		if progress != nil && rows > 0 {
			progress(done, max(done, rows), int64(float64(bytes)*min(1, float64(done)/float64(rows))))
		}
	}
}

func corruptionAction(ce *buffer.CorruptionError) Action {
	a := Action{Action: "quarantine", File: ce.Segment, Offset: ce.Offset, Reason: ce.Reason,
		Quarantined: ce.Quarantined, LostFirst: ce.LostFirst, LostLast: ce.LostLast}
	if ce.Err != nil {
		a.Reason += ": " + ce.Err.Error()
	}
	switch {
	case ce.Segment == "cursor":
		a.Action = "reset"
		a.Reason += " (cursor read as 0: delivered rows still on disk are sent again)"
	case ce.Segment == "manifest":
		a.Action = "rewrite"
	case ce.Quarantined == "" && strings.Contains(ce.Reason, "missing"):
		a.Action = "missing"
	}
	return a
}

// planned lists what Open (and a verifying read) would do.
func planned(in *buffer.Inspection) []Action {
	return append(tempActions(in), damageActions(in)...)
}

// tempActions lists the temporary files Open removes.
func tempActions(in *buffer.Inspection) []Action {
	var out []Action
	for _, t := range in.Temp {
		out = append(out, Action{Action: "remove", File: t, Offset: -1, Reason: "temporary file"})
	}
	return out
}

// damageActions lists what Open does about damage and leftovers.
func damageActions(in *buffer.Inspection) []Action {
	var out []Action
	if in.CursorProblem != "" {
		out = append(out, Action{Action: "reset", File: "cursor", Offset: -1, Reason: in.CursorProblem + " (cursor read as 0: delivered rows still on disk are sent again)"})
	}
	switch {
	case in.Manifest.Problem != "":
		out = append(out, Action{Action: "rewrite", File: "manifest", Offset: in.Manifest.Offset, Reason: in.Manifest.Problem + " (a copy goes to quarantine)"})
	case in.Manifest.TornTail:
		out = append(out, Action{Action: "truncate", File: "manifest", Offset: in.Manifest.Offset, Reason: "torn tail"})
	}
	for _, w := range in.WAL {
		switch {
		case w.NoHeader:
			out = append(out, Action{Action: "remove", File: w.Path, Offset: -1, Reason: "no file header: holds nothing"})
		case len(w.Damage) > 0:
			for _, d := range w.Damage {
				out = append(out, Action{Action: "quarantine", File: w.Path, Offset: d.Offset, Reason: d.Reason, LostFirst: d.LostFirst, LostLast: d.LostLast})
			}
			if w.TornAt >= 0 {
				out = append(out, Action{Action: "truncate", File: w.Path, Offset: w.TornAt, Bytes: w.TornBytes,
					Reason: "torn tail (a write a crash cut, never acknowledged; it goes to quarantine with the file)"})
			}
			out = append(out, Action{Action: "salvage", File: w.Path, Offset: -1, Reason: fmt.Sprintf("%d valid records (%d rows) sealed into segments", w.Records, w.Rows)})
		case w.TornAt >= 0:
			out = append(out, Action{Action: "truncate", File: w.Path, Offset: w.TornAt, Reason: "torn tail", Bytes: w.TornBytes})
		}
	}
	for _, m := range in.Missing {
		out = append(out, Action{Action: "missing", File: m.Segment, Offset: -1, Reason: m.Reason, LostFirst: m.LostFirst, LostLast: m.LostLast})
	}
	for _, g := range append(append([]disk.SegmentState(nil), in.Segments...), in.DeadLetters...) {
		a := Action{File: g.Path, Offset: -1}
		lost := func() {
			if !g.CoveredWAL && g.Undelivered > 0 {
				a.LostFirst, a.LostLast = max(g.First, in.Cursor+1), g.Last
			}
		}
		switch g.State {
		case disk.SegBadSize:
			a.Action, a.Reason = "quarantine", fmt.Sprintf("size %d, manifest says %d", g.DiskBytes, g.Bytes)
			lost()
		case disk.SegBadCRC:
			a.Action, a.Reason = "quarantine", "file checksum mismatch"
			lost()
		case disk.SegMissing:
			a.Action, a.Reason = "missing", "listed in the manifest but missing"
			lost()
		case disk.SegUnlisted:
			a.Action, a.Reason = "adopt", "not listed in the manifest: adopted when readable, else quarantined"
			if g.CoveredWAL {
				a.Action, a.Reason = "remove", "not listed and still covered by the WAL (interrupted seal)"
			}
		case disk.SegDelivered:
			if g.Present {
				a.Action, a.Reason = "remove", "delivered"
			}
		}
		if a.Action != "" {
			out = append(out, a)
		}
	}
	return out
}

// WriteText writes the report for people.
func (r *RepairReport) WriteText(w io.Writer) error {
	verb := "repaired"
	if r.DryRun {
		verb = "would repair (dry run, nothing changed)"
	}
	if len(r.Actions) == 0 {
		fmt.Fprintf(w, "%s: no damage found\n", r.Dir)
	} else {
		fmt.Fprintf(w, "%s: %s:\n", r.Dir, verb)
		for _, a := range r.Actions {
			fmt.Fprintf(w, "  %s\n", a)
		}
	}
	if r.After != nil {
		fmt.Fprintf(w, "backlog before %d rows, after %d rows; quarantine holds %d files\n", r.Before.BacklogRows, r.After.BacklogRows, r.After.Quarantined)
	}
	return nil
}

// recorder captures the buffer's log messages that repair reports.
type recorder struct {
	mu   sync.Mutex
	acts []Action
}

func (r *recorder) records() []Action {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Action(nil), r.acts...)
}

func (r *recorder) add(rec slog.Record) {
	attr := map[string]slog.Value{}
	rec.Attrs(func(a slog.Attr) bool { attr[a.Key] = a.Value; return true })
	var a Action
	switch rec.Message {
	case "adopted a segment the manifest did not list":
		a = Action{Action: "adopt", File: attr["file"].String(), Offset: -1, Reason: "not listed in the manifest"}
	default:
		return
	}
	r.mu.Lock()
	r.acts = append(r.acts, a)
	r.mu.Unlock()
}

// teeHandler records messages and passes them on.
type teeHandler struct {
	rec  *recorder
	next slog.Handler
}

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	h.rec.add(r)
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.rec, h.next.WithAttrs(as)}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h.rec, h.next.WithGroup(name)}
}
