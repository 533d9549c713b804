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
// record in the sink — coalesced:
// of several transitions in a row only the record after the last is sent,
// and the hub keeps the highest version. At Run's start it stores every
// record changed after the cursor, so a crash between a transition and
// its storing repeats records rather than losing them.
type Records struct {
	src  Source
	sink Sink
	opts RecordsOptions
	log  *slog.Logger

	mu    sync.Mutex
	dirty map[string]uint64 // id -> lowest version not yet stored
	high  uint64            // highest version marked
	wake  chan struct{}
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
}

func (r *Records) readCursor() uint64 {
	if r.opts.Cursor == "" {
		return 0
	}
	data, err := spec.ReadConfigFile(r.opts.Cursor, 4<<10)
	if err != nil {
		return 0
	}
	var c cursorFile
	if json.Unmarshal(data, &c) != nil {
		return 0
	}
	return c.Version
}

func (r *Records) writeCursor(v uint64) {
	if r.opts.Cursor == "" {
		return
	}
	data, _ := json.Marshal(cursorFile{Version: v})
	if err := disk.WriteFileAtomic(disk.OS, r.opts.Cursor, data); err != nil {
		// The next start sends again what follows the old cursor.
		r.log.Warn("hub commands: could not write the records cursor", "err", err)
	}
}

// Run stores changed records until ctx ends (see Records).
func (r *Records) Run(ctx context.Context) {
	cur := r.readCursor()
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
