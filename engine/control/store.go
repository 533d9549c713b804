package control

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// The log: a file of frames, each
//
//	length uint32 (little endian) | crc32c(payload) uint32 | payload
//
// whose payload is one JSON entry. A torn or corrupt frame ends the log:
// it and everything after it are cut off when the log is opened (only the
// last append can be torn; every append is synced before the arbiter goes
// on). When the file grows past its limit it is rewritten from the live
// state (records kept, the audit kept, leases in force) into a new file
// that replaces it atomically.

const (
	logName     = "control.log"
	frameHeader = 8
	// maxFrame bounds one entry: a record is bounded by the arbiter's
	// limits far below this.
	maxFrame = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errStoreClosed is the error of an append after close (a device's reply
// arriving while the arbiter closes).
var errStoreClosed = errors.New("control log closed")

// entry is one line of the log. Rec and Tr come together for a transition
// (Rec the record after it, Tr the transition); Tr alone is an audit event
// that concerns no record; Lease records a lease taken (or, with Released,
// given up).
type logEntry struct {
	Rec      *Record     `json:"rec,omitempty"`
	Tr       *Transition `json:"tr,omitempty"`
	Lease    *Lease      `json:"lease,omitempty"`
	Released bool        `json:"released,omitempty"`
	Key      *keyEntry   `json:"key,omitempty"`
}

// keyEntry is the idempotency key of a command whose record is no longer
// kept, written by a compaction: it is remembered until Until.
type keyEntry struct {
	Origin string    `json:"origin"`
	Key    string    `json:"key"`
	ID     string    `json:"id"`
	Until  time.Time `json:"until"`
}

// state is what a log holds once read.
type state struct {
	records map[string]Record
	audit   []Transition
	leases  map[string]Lease
	keys    []keyEntry
	cut     int64 // bytes cut off after the last good frame
}

// store appends entries to the log.
type store struct {
	dir     string
	noSync  bool
	maxSize int64

	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
	buf  []byte
	err  error // a failed append: the log cannot be trusted further
	// Group commit: appends are numbered (written); one appender at a
	// time syncs (syncing) for every append written by then, the others
	// wait on synced until it covers theirs.
	written, synced uint64
	syncing         bool
	cond            *sync.Cond
}

// openStore reads the log in dir (creating dir and the log if needed),
// cutting off a torn tail, and returns it with what it holds.
func openStore(dir string, maxSize int64, noSync bool) (*store, *state, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("control log: %w", err)
	}
	name := filepath.Join(dir, logName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("control log: %w", err)
	}
	if err := lockLog(f); err != nil {
		f.Close()
		return nil, nil, err
	}
	st, good, err := readLog(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("control log %s: %w", name, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > good {
		st.cut = fi.Size() - good
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("control log %s: cutting off a torn tail: %w", name, err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("control log: %w", err)
	}
	s := &store{dir: dir, noSync: noSync, maxSize: maxSize, f: f, w: bufio.NewWriter(f), size: good}
	s.cond = sync.NewCond(&s.mu)
	return s, st, nil
}

// readLog reads every whole frame and returns the state and the offset
// after the last good frame.
func readLog(f *os.File) (*state, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	st := &state{records: map[string]Record{}, leases: map[string]Lease{}}
	r := bufio.NewReader(f)
	var off int64
	var hdr [frameHeader]byte
	seen := map[uint64]bool{}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // end, or a torn header
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n == 0 || n > maxFrame {
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		var e logEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			break
		}
		off += frameHeader + int64(n)
		if e.Rec != nil && e.Rec.ID != "" {
			if old, ok := st.records[e.Rec.ID]; !ok || e.Rec.Version >= old.Version {
				st.records[e.Rec.ID] = *e.Rec
			}
		}
		if e.Tr != nil && !seen[e.Tr.Seq] {
			seen[e.Tr.Seq] = true
			st.audit = append(st.audit, *e.Tr)
		}
		if e.Key != nil {
			st.keys = append(st.keys, *e.Key)
		}
		if e.Lease != nil {
			if e.Released {
				if cur, ok := st.leases[e.Lease.Asset]; ok && cur.Holder == e.Lease.Holder {
					delete(st.leases, e.Lease.Asset)
				}
			} else {
				st.leases[e.Lease.Asset] = *e.Lease
			}
		}
	}
	slices.SortFunc(st.audit, func(a, b Transition) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return st, off, nil
}

// appendEntry writes e and, when wait is set and the store syncs, syncs
// it (with every entry written by then); an entry written without waiting
// is synced by the next append that waits or by syncAll.
func (s *store) appendEntry(e logEntry, wait bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if err := s.write(s.w, e); err != nil {
		s.err = err
		return err
	}
	if err := s.w.Flush(); err != nil {
		s.err = fmt.Errorf("control log: %w", err)
		return s.err
	}
	s.written++
	if s.noSync {
		s.synced = s.written
		return nil
	}
	if !wait {
		return nil
	}
	return s.syncLocked(s.written)
}

// syncAll syncs every entry written so far.
func (s *store) syncAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return s.syncLocked(s.written)
}

// syncLocked returns once the entries up to mine are synced: one caller
// at a time syncs, for every entry written by then; s.mu is held.
func (s *store) syncLocked(mine uint64) error {
	for s.synced < mine && s.err == nil {
		if s.syncing {
			s.cond.Wait()
			continue
		}
		s.syncing = true
		target, f := s.written, s.f
		s.mu.Unlock()
		err := f.Sync()
		s.mu.Lock()
		s.syncing = false
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("control log: sync: %w", err)
		}
		if err == nil {
			s.synced = max(s.synced, target)
		}
		s.cond.Broadcast()
	}
	if s.synced >= mine {
		return nil
	}
	return s.err
}

// quiesce waits until no sync runs outside the lock; s.mu is held.
func (s *store) quiesce() {
	for s.syncing {
		s.cond.Wait()
	}
}

// write frames e into w and counts its size; s.mu is held.
func (s *store) write(w io.Writer, e logEntry) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("control log: %w", err)
	}
	if len(payload) > maxFrame {
		return fmt.Errorf("control log: entry of %d bytes over the limit of %d", len(payload), maxFrame)
	}
	s.buf = binary.LittleEndian.AppendUint32(s.buf[:0], uint32(len(payload)))
	s.buf = binary.LittleEndian.AppendUint32(s.buf, crc32.Checksum(payload, castagnoli))
	s.buf = append(s.buf, payload...)
	if _, err := w.Write(s.buf); err != nil {
		return fmt.Errorf("control log: %w", err)
	}
	s.size += int64(len(s.buf))
	return nil
}

// full reports whether the log has outgrown its limit.
func (s *store) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxSize > 0 && s.size > s.maxSize
}

// compact rewrites the log from snap (called with the live state): the
// new file is written and synced aside, then renamed over the log. Entries
// appended meanwhile wait and go to the new file; replay keeps the newest
// version of each record, so their order does not matter.
func (s *store) compact(snap func() []logEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.quiesce()
	return s.rewriteLocked(snap())
}

// repair rewrites the log from snap after an append failed (a full disk,
// say): the new file replaces the old one with its torn tail, and appends
// go on. It returns the error that stopped the log if it cannot.
func (s *store) repair(snap func() []logEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil || errors.Is(s.err, errStoreClosed) {
		return s.err
	}
	s.quiesce()
	if err := s.rewriteLocked(snap()); err != nil {
		return fmt.Errorf("%w (%w)", s.err, err)
	}
	s.err = nil
	return nil
}

// rewriteLocked writes entries into a new file and renames it over the
// log; s.mu is held and no sync runs.
func (s *store) rewriteLocked(entries []logEntry) error {
	tmp := filepath.Join(s.dir, logName+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("control log: compacting: %w", err)
	}
	w := bufio.NewWriter(f)
	old := s.size
	s.size = 0
	for _, e := range entries {
		if err = s.write(w, e); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		// The new file is locked before it takes the log's name, so that
		// the log is never unlocked while this process appends to it.
		err = lockLog(f)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, logName))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		s.size = old
		return fmt.Errorf("control log: compacting: %w", err)
	}
	syncDir(s.dir)
	s.f.Close()
	s.f, s.w = f, bufio.NewWriter(f)
	s.synced = s.written // all in the new file, synced
	// A state that stays large raises the limit rather than compacting
	// at every append.
	if s.size > s.maxSize/2 {
		s.maxSize = 2 * s.size
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// close flushes and closes the log.
func (s *store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	s.quiesce()
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	if s.err == nil {
		s.err = errStoreClosed
	}
	return err
}

// health returns the error that stopped the log, if any.
func (s *store) health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
