// Package position keeps the durable position of a source that can read
// its input again (a file with an offset, a simulator with a row count), so
// that after a restart — kill -9 included — it resumes where the
// acknowledged input ends: it skips no row, and emits a row again (under
// a new identity) only when the process died between the row's batch
// becoming durable in the sinks and its position being written (see the
// Guarantee below and docs/forwarding.md).
//
// A source asks a Tracker for an Ack for every batch it emits, with the
// position after that batch. Once a batch's every effect is durable in the
// sinks (or deliberately dropped), its Ack completes; the tracker commits
// the position of the longest prefix of completed batches to a small file
// in the data directory (<data dir>/<pipeline>/<source>/position), written
// in place. The position is kept when the source reads its input to the
// end: a later run finds nothing left to read (or only what was appended
// since) instead of reading the input again. Store.Reset forgets it
// (sluice run --from-start).
//
// Guarantee: after a process crash the source resumes exactly after the
// last batch whose acknowledgement was recorded; the record is written right
// after the acknowledgement (not fsynced at once: a process crash keeps it,
// and a power loss may take back up to a second of positions, whose rows are
// then emitted again).
package position

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

const (
	magic = "SLUICEPS"
	// slotSize bounds a position: a few KiB of JSON.
	slotSize = 4096

	// FileName is the name of the position file in the source's directory.
	FileName = "position"
	// syncEvery is how often a recorded position is fsynced.
	syncEvery = time.Second
)

// MaxBytes is the largest position a source may record.
var MaxBytes = disk.SlotPayloadMax(slotSize)

// ForSource opens the position store of the source bc builds, in
// <data dir>/<pipeline>/<source>; with bc.FromStart it forgets the
// recorded position first. It returns nil, nil when nothing is recorded
// for this build (a dry run, no data directory).
func ForSource(bc engine.BuildContext) (*Store, error) {
	if bc.DryRun || bc.DataDir == "" {
		return nil, nil
	}
	st, err := Open(filepath.Join(bc.DataDir, bc.Pipeline, bc.Name))
	if err != nil {
		return nil, err
	}
	if bc.FromStart {
		if err := st.Reset(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Store is the position file of one source.
type Store struct {
	path  string
	slots *disk.Slots
	gen   uint64
	saved []byte
	valid bool
}

// Open reads the position file in dir, creating the directory and an
// empty file (no position) when there is none: recording a position later
// is then one write in place, never the creation of a file, so that the
// time between a batch becoming durable and its position being recorded
// stays as short as possible. Load returns what the file holds.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("position: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName)}
	data, err := disk.ReadFile(disk.OS, s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("position: %w", err)
	}
	p, gen, found, damaged := disk.DecodeSlots(data, magic, slotSize)
	if damaged {
		return nil, fmt.Errorf("position: %s is damaged; delete it to read the input from its start", s.path)
	}
	s.gen, s.valid = gen, found
	if found && len(p) > 0 {
		s.saved = append([]byte(nil), p...)
	}
	return s, nil
}

// prepare opens the file for in-place writes, creating it (holding no
// position) when missing.
func (s *Store) prepare() error {
	if s.slots != nil {
		return nil
	}
	sl, err := disk.OpenSlots(disk.OS, s.path, magic, slotSize, s.gen, nil, !s.valid)
	if err != nil {
		return err
	}
	s.slots, s.valid = sl, true
	return nil
}

// Path returns the position file.
func (s *Store) Path() string { return s.path }

// Load returns the recorded position, if any.
func (s *Store) Load() ([]byte, bool) { return s.saved, s.saved != nil }

// Recorded reports whether a position is recorded; a nil store (a source
// that does not resume) has none. Sources answer engine.Resumer with it.
func (s *Store) Recorded() bool { return s != nil && s.saved != nil }

// save records p, and syncs when asked.
func (s *Store) save(p []byte, sync bool) error {
	if err := s.prepare(); err != nil {
		return err
	}
	return s.slots.Write(p, sync)
}

// Reset forgets the recorded position, durably: the source reads its
// input from its start.
func (s *Store) Reset() error {
	s.saved = nil
	if !s.valid {
		return nil // no position file
	}
	if err := s.save(nil, true); err != nil {
		return fmt.Errorf("position: reset %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) close() {
	if s.slots != nil {
		_ = s.slots.Sync()
		_ = s.slots.Close()
		s.slots = nil
	}
}

// Tracker commits the positions of emitted batches, in emission order, as
// their acknowledgements complete. It is safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	store   *Store
	pending []*entry // emitted, in order
	ended   bool     // the source returned
	synced  time.Time
	log     func(msg string, err error)
	closed  bool
}

type entry struct {
	pos  []byte
	done bool
}

// NewTracker returns a tracker recording into store. warn, when not nil,
// receives failures to record (the run goes on: a lost record only means
// rows emitted again after a restart).
func NewTracker(store *Store, warn func(msg string, err error)) *Tracker {
	if warn == nil {
		warn = func(string, error) {}
	}
	if err := store.prepare(); err != nil {
		warn("cannot open the source position file", err)
	}
	return &Tracker{store: store, log: warn, synced: time.Now()}
}

// Emit returns the Ack of a batch after which the input position is pos.
// pos must be at most MaxBytes.
func (t *Tracker) Emit(pos []byte) *engine.Ack {
	e := &entry{pos: pos}
	t.mu.Lock()
	t.pending = append(t.pending, e)
	t.mu.Unlock()
	return engine.NewAck(func() { t.done(e) })
}

func (t *Tracker) done(e *entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.done = true
	t.commitLocked()
}

// commitLocked records the position after the completed prefix.
func (t *Tracker) commitLocked() {
	var last []byte
	n := 0
	for n < len(t.pending) && t.pending[n].done {
		last = t.pending[n].pos
		n++
	}
	t.pending = t.pending[n:]
	if t.closed {
		return
	}
	if last != nil {
		sync := time.Since(t.synced) >= syncEvery || (t.ended && len(t.pending) == 0)
		if err := t.store.save(last, sync); err != nil {
			t.log("cannot record the source position", err)
		} else if sync {
			t.synced = time.Now()
		}
	}
	if t.ended && len(t.pending) == 0 {
		t.store.close()
		t.closed = true
	}
}

// End tells the tracker the source returned. Once every emitted batch is
// acknowledged, the position is made durable; batches never acknowledged
// (a sink failed) leave the last committed position.
func (t *Tracker) End() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = true
	t.commitLocked()
}

// Close makes the last committed position durable and releases the file,
// whatever is still pending (the pipeline stopped).
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.store.close()
		t.closed = true
	}
}
