package hubcontrol

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Source is where Records reads the arbiter's command records.
type Source interface {
	// Get returns the record id as it is now.
	Get(id string) (command.Command, bool)
	// Since returns every record whose Version is above version.
	Since(version uint64) []command.Command
	// Audit returns the audit entries of record id, oldest first.
	Audit(id string) []command.Transition
}

// Sink stores a command record for the hub; *uplink.Uplink is one. An
// error means the record was not stored (a full buffer): it is tried
// again.
type Sink interface {
	CommandRecord(rec command.Command, audit []command.Transition) error
}

// EventSource is a Source that also gives the arbiter's audit entries
// without a command (lease events).
type EventSource interface {
	// Events returns the audit entries without a command id whose Seq is
	// above after, oldest first.
	Events(after uint64) []command.Transition
}

// EventSink is a Sink that also stores those entries for the hub;
// *uplink.Uplink is one. An error means the entry was not stored: it is
// tried again.
type EventSink interface {
	AuditEvent(tr command.Transition) error
}

// RecordsOptions configure Records.
type RecordsOptions struct {
	// Cursor is the file naming the highest version up to which every
	// record's newest copy is stored (<data_dir>/hub/control.cursor).
	Cursor string
	// Poll is how often the source is asked for records changed since the
	// last seen (default 250 ms), for transitions Transition was not told
	// of.
	Poll time.Duration
	// Log receives what Records does (default: discarded).
	Log *slog.Logger
}

// Records sends the arbiter's command records to the hub: Transition (the
// arbiter's OnTransition, when wired) marks a record changed without
// blocking, Run also asks the source for records changed since the highest
// version seen every Poll, and stores the current copy of each changed
// record in the sink — coalesced: of several transitions in a row only
// the record after the last is sent, and the hub keeps the highest
// version. At Run's start it stores every record changed after the
// cursor, so a crash between a transition and its storing repeats records
// rather than losing them.
//
// When the source is an EventSource and the sink an EventSink, the audit
// entries without a command, lease events, are stored too, each once, in
// order; the cursor file keeps the highest one stored.
type Records struct {
	src  Source
	sink Sink
	opts RecordsOptions
	log  *slog.Logger

	mu    sync.Mutex
	dirty map[string]uint64 // id -> lowest version not yet stored
	high  uint64            // highest version marked
	wake  chan struct{}

	// events is the highest lease event stored (Run's goroutine only).
	events uint64
}

// NewRecords returns a Records reading src and storing into sink.
func NewRecords(src Source, sink Sink, opts RecordsOptions) *Records {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	return &Records{src: src, sink: sink, opts: opts, log: opts.Log, dirty: map[string]uint64{}, wake: make(chan struct{}, 1)}
}

// Transition marks the record of tr changed; entries without a command
// (lease events) are not records. It never blocks.
func (r *Records) Transition(tr command.Transition) {
	if tr.ID == "" {
		select { // a lease event: Run asks the source for it
		case r.wake <- struct{}{}:
		default:
		}
		return
	}
	r.mark(tr.ID, tr.Seq)
}

func (r *Records) mark(id string, version uint64) {
	r.mu.Lock()
	if v, ok := r.dirty[id]; !ok || version < v {
		r.dirty[id] = version
	}
	r.high = max(r.high, version)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

type cursorFile struct {
	Version uint64 `json:"version"`
	// Events is the highest lease event stored.
	Events uint64 `json:"events,omitempty"`
}

func (r *Records) readCursor() cursorFile {
	if r.opts.Cursor == "" {
		return cursorFile{}
	}
	data, err := spec.ReadConfigFile(r.opts.Cursor, 4<<10)
	if err != nil {
		return cursorFile{}
	}
	var c cursorFile
	if json.Unmarshal(data, &c) != nil {
		return cursorFile{}
	}
	return c
}

func (r *Records) writeCursor(v uint64) {
	if r.opts.Cursor == "" {
		return
	}
	data, _ := json.Marshal(cursorFile{Version: v, Events: r.events})
	if err := disk.WriteFileAtomic(disk.OS, r.opts.Cursor, data); err != nil {
		// The next start sends again what follows the old cursor.
		r.log.Warn("hub commands: could not write the records cursor", "err", err)
	}
}

// Run stores changed records until ctx ends (see Records).
func (r *Records) Run(ctx context.Context) {
	cf := r.readCursor()
	cur := cf.Version
	all := r.src.Since(0)
	var top uint64
	for _, rec := range all {
		top = max(top, rec.Version)
	}
	if cur > top {
		// The arbiter's log lost what the cursor names (it was reset):
		// everything it holds is sent again.
		cur = 0
	}
	esrc, _ := r.src.(EventSource)
	esink, _ := r.sink.(EventSink)
	if esrc != nil && esink != nil {
		r.events = cf.Events
		if evs := esrc.Events(0); len(evs) == 0 || evs[len(evs)-1].Seq < r.events {
			r.events = 0 // the log was reset: send what it holds
		}
	}
	for _, rec := range all {
		if rec.Version > cur {
			r.mark(rec.ID, rec.Version)
		}
	}
	wait := retryMin
	tick := time.NewTicker(r.opts.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tick.C:
			r.mu.Lock()
			seen := r.high
			r.mu.Unlock()
			for _, rec := range r.src.Since(seen) {
				r.mark(rec.ID, rec.Version)
			}
		}
		if esrc != nil && esink != nil {
			sent, err := r.sendEvents(esrc, esink)
			if sent {
				r.writeCursor(cur)
			}
			if err != nil {
				r.log.Warn("hub commands: lease events wait to be stored for the hub", "err", err)
				if !sleep(ctx, wait) {
					return
				}
				wait = min(2*wait, retryMax)
				r.wakeUp()
				continue
			}
		}
		r.mu.Lock()
		batch, high := r.dirty, r.high
		r.dirty = map[string]uint64{}
		r.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		ids := slices.SortedFunc(maps.Keys(batch), func(a, b string) int { return cmp.Compare(batch[a], batch[b]) })
		var failed error
		for i, id := range ids {
			rec, ok := r.src.Get(id)
			if !ok {
				continue // no longer kept
			}
			if err := r.sink.CommandRecord(rec, r.src.Audit(id)); err != nil {
				failed = err
				for _, left := range ids[i:] {
					r.mark(left, batch[left])
				}
				break
			}
		}
		if failed != nil {
			r.log.Warn("hub commands: command records wait to be stored for the hub", "err", failed)
			if errors.Is(failed, context.Canceled) || !sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, retryMax)
			continue
		}
		wait = retryMin
		// Every version up to high is stored, but for those marked again
		// since (their copy then is newer still).
		r.mu.Lock()
		upTo := high
		for _, v := range r.dirty {
			if v <= upTo {
				upTo = v - 1
			}
		}
		r.mu.Unlock()
		if upTo > cur {
			cur = upTo
			r.writeCursor(cur)
		}
	}
}

// sendEvents stores the lease events after the last stored, in order,
// and reports whether it stored any.
func (r *Records) sendEvents(src EventSource, sink EventSink) (sent bool, err error) {
	for _, ev := range src.Events(r.events) {
		if ev.ID != "" || ev.Seq <= r.events {
			continue
		}
		if err := sink.AuditEvent(ev); err != nil {
			return sent, err
		}
		r.events, sent = ev.Seq, true
	}
	return sent, nil
}

func (r *Records) wakeUp() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
