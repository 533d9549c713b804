// Package checkpoint keeps the checkpoints of one pipeline durable: it
// implements engine.CheckpointStore on a directory of checkpoint files,
// one per epoch, published atomically and read back with every damage
// detected, reported and passed over. docs/format/checkpoint.md is the
// contract for the files and for the recovery rules.
package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// ErrNoValid is wrapped by the error of Load when checkpoint files exist
// (in the directory, or moved to its quarantine) but none of them is
// valid. It is engine.ErrNoValidCheckpoint: a graph starts afresh on it,
// and stops on any other error of Load.
var ErrNoValid = engine.ErrNoValidCheckpoint

// ErrTooLarge is wrapped by the error of Save for a checkpoint whose file
// would exceed Options.MaxBytes, and by the error of Load for a file that
// does (such a file is left in place: it may be valid).
var ErrTooLarge = errors.New("checkpoint: file larger than the limit")

// ErrOldEpoch is wrapped by the error of Save for a checkpoint whose epoch
// is below that of a checkpoint already stored: it would never be loaded.
var ErrOldEpoch = errors.New("checkpoint: epoch older than a stored checkpoint")

// ErrLocked is wrapped by the error of Open when another process has the
// directory open (a second engine started on the same data directory).
var ErrLocked = errors.New("checkpoint: directory in use")

// DefaultMaxBytes is the default of Options.MaxBytes.
const DefaultMaxBytes = 1 << 30

const (
	// Ext ends the name of every checkpoint file.
	Ext = ".ckpt"
	// QuarantineDir is the subdirectory damaged files are moved into.
	QuarantineDir = "quarantine"
	tmpExt        = ".tmp"
	epochDigits   = 20
	// keep is the number of checkpoints kept after a Save.
	keep = 2
)

// Options configure a Store.
type Options struct {
	// FS is the file system; disk.OS (buffer.OS) by default.
	FS disk.FS
	// Log receives damaged checkpoints and failed clean-ups;
	// slog.Default() by default.
	Log *slog.Logger
	// MaxBytes bounds the size of a checkpoint file, written or read;
	// DefaultMaxBytes when 0 or less. Reading never allocates more than
	// the file holds, whatever its fields declare.
	MaxBytes int64
}

// Store is the durable store of one pipeline's checkpoints. Its methods
// are safe for concurrent use; they run one at a time. One Store at a
// time may use a directory.
type Store struct {
	dir  string
	fs   disk.FS
	log  *slog.Logger
	max  int64
	mu   sync.Mutex
	bad  int
	keep int
}

var _ engine.CheckpointStore = (*Store)(nil)

// FileName returns the name of the file holding the checkpoint of epoch.
func FileName(epoch uint64) string { return fmt.Sprintf("%0*d%s", epochDigits, epoch, Ext) }

// parseName returns the epoch a checkpoint file name carries.
func parseName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, Ext)
	if !ok || len(digits) != epochDigits {
		return 0, false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	e, err := strconv.ParseUint(digits, 10, 64)
	return e, err == nil
}

// Open opens the checkpoint directory dir (<data dir>/<pipeline>/checkpoints),
// creating it when missing, and removes the temporary files a crash
// during Save left behind. On the real disk it locks dir for this process
// until the process ends (ErrLocked when another process holds it);
// stores of one process may share a directory, one at a time.
func Open(dir string, opts Options) (*Store, error) {
	if opts.FS == nil {
		opts.FS = disk.OS
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	s := &Store{dir: dir, fs: opts.FS, log: opts.Log, max: opts.MaxBytes, keep: keep}
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: create %s: %w", dir, err)
	}
	if s.fs == disk.OS {
		if err := lockDir(dir); err != nil {
			return nil, err
		}
	}
	names, err := s.fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", dir, err)
	}
	removed := false
	for _, n := range names {
		if strings.HasSuffix(n, tmpExt) {
			if err := s.fs.Remove(path.Join(dir, n)); err != nil {
				return nil, fmt.Errorf("checkpoint: remove stale %s: %w", n, err)
			}
			s.log.Info("removed a checkpoint file a crash left unfinished", "file", path.Join(dir, n))
			removed = true
		}
	}
	if removed {
		if err := s.fs.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("checkpoint: sync %s: %w", dir, err)
		}
	}
	return s, nil
}

// Dir returns the checkpoint directory.
func (s *Store) Dir() string { return s.dir }

// Corrupt returns the number of damaged checkpoint files Load has found
// (and moved to quarantine) since Open.
func (s *Store) Corrupt() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}

// epochs returns the epochs of the checkpoint files in the directory,
// newest first.
func (s *Store) epochs() ([]uint64, error) {
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", s.dir, err)
	}
	var out []uint64
	for _, n := range names {
		if e, ok := parseName(n); ok {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out, nil
}

// Save makes c durable and the newest checkpoint: it writes a temporary
// file, syncs it, renames it to the epoch's name and syncs the directory.
// Then it deletes all but the two newest checkpoints. A Save that fails
// leaves the checkpoints as they were, except that after a failure of the
// final directory sync c may still be found by Load (whole); it removes
// its temporary file unless the file system refuses that too (Open
// removes it then). c.Epoch must not be below the newest stored epoch; an
// equal epoch replaces that checkpoint.
func (s *Store) Save(c *engine.Checkpoint) error {
	data, err := Encode(c)
	if err != nil {
		return err
	}
	if int64(len(data)) > s.max {
		return fmt.Errorf("%w: checkpoint %d needs %d bytes, the limit is %d", ErrTooLarge, c.Epoch, len(data), s.max)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	epochs, err := s.epochs()
	if err != nil {
		return err
	}
	if len(epochs) > 0 && epochs[0] > c.Epoch {
		return fmt.Errorf("%w: saving epoch %d, epoch %d is stored", ErrOldEpoch, c.Epoch, epochs[0])
	}
	final := path.Join(s.dir, FileName(c.Epoch))
	if err := s.publish(final, data); err != nil {
		// The file's name says the epoch; the engine says it saved one.
		return err
	}
	s.prune(append([]uint64{c.Epoch}, epochs...))
	return nil
}

// publish writes data to final through a synced temporary file and syncs
// the directory.
func (s *Store) publish(final string, data []byte) error {
	tmp := final + tmpExt
	f, err := s.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		s.discard(tmp)
		return err
	}
	err = writeAll(f, data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, final)
	}
	if err != nil {
		s.discard(tmp)
		return err
	}
	return s.fs.SyncDir(s.dir)
}

func writeAll(f io.Writer, data []byte) error {
	n, err := f.Write(data)
	if err == nil && n < len(data) {
		err = io.ErrShortWrite
	}
	return err
}

// discard removes a temporary file after a failed Save.
func (s *Store) discard(tmp string) {
	if err := s.fs.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("could not remove the temporary file of a failed checkpoint; it is removed on the next open", "file", tmp, "err", err)
	}
}

// prune deletes all checkpoints but the newest ones of epochs. A failure
// is logged: the checkpoint just saved is durable already.
func (s *Store) prune(epochs []uint64) {
	slices.Sort(epochs)
	epochs = slices.Compact(epochs)
	if len(epochs) <= s.keep {
		return
	}
	for _, e := range epochs[:len(epochs)-s.keep] {
		name := path.Join(s.dir, FileName(e))
		if err := s.fs.Remove(name); err != nil {
			s.log.Warn("could not delete an old checkpoint", "file", name, "err", err)
			return
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		s.log.Warn("could not sync the checkpoint directory after deleting old checkpoints", "dir", s.dir, "err", err)
	}
}

// Load returns the newest valid checkpoint. A damaged file (bad magic or
// version, cut, trailing bytes, checksum mismatch, invalid contents, an
// epoch other than its name's, not a regular file) is logged at error level, counted (see
// Corrupt), moved to quarantine and passed over for the one before it.
// With no checkpoint files at all Load returns nil and no error; when
// files exist but none is valid (or only quarantined ones remain), the
// error wraps ErrNoValid. A file larger than Options.MaxBytes and a
// failing file system are errors; nothing is moved then.
func (s *Store) Load() (*engine.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	epochs, err := s.epochs()
	if err != nil {
		return nil, err
	}
	var damaged []string
	for _, e := range epochs {
		name := path.Join(s.dir, FileName(e))
		data, err := s.read(name)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		var c *engine.Checkpoint
		if err == nil {
			c, err = Decode(data)
		}
		if err == nil && c.Epoch != e {
			err = fmt.Errorf("%w: epoch %d in the file named for epoch %d", ErrCorrupt, c.Epoch, e)
		}
		if err == nil {
			return c, nil
		}
		s.bad++
		moved, qerr := s.quarantine(FileName(e))
		s.log.Error("damaged checkpoint passed over", "file", name, "reason", err, "quarantined", moved)
		if qerr != nil {
			return nil, fmt.Errorf("checkpoint: move damaged %s to quarantine: %w", name, qerr)
		}
		damaged = append(damaged, fmt.Sprintf("%s: %v", FileName(e), err))
	}
	if len(damaged) > 0 {
		return nil, fmt.Errorf("%w in %s: %s", ErrNoValid, s.dir, strings.Join(damaged, "; "))
	}
	q, err := s.quarantined()
	if err != nil {
		return nil, err
	}
	if q > 0 {
		return nil, fmt.Errorf("%w in %s: %d damaged checkpoints in %s and none valid", ErrNoValid, s.dir, q, QuarantineDir)
	}
	return nil, nil
}

// read reads a checkpoint file, refusing one larger than the limit before
// allocating for it. Something other than a regular file under a
// checkpoint's name (a named pipe, whose open would wait for a writer
// forever; a device; a directory) is damage (ErrCorrupt), found without
// opening it.
func (s *Store) read(name string) ([]byte, error) {
	fi, err := s.fs.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%s)", ErrCorrupt, name, fi.Mode().Type())
	}
	f, err := s.fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", name, err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: size of %s: %w", name, err)
	}
	if n > s.max {
		return nil, fmt.Errorf("%w: %s holds %d bytes, the limit is %d", ErrTooLarge, name, n, s.max)
	}
	buf := make([]byte, n)
	if k, err := f.ReadAt(buf, 0); k < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("checkpoint: read %s: %w", name, err)
	}
	return buf, nil
}

// quarantine moves a damaged file of the directory to quarantine/ under
// its own name (with .1, .2, ... appended when taken) and returns the new
// name.
func (s *Store) quarantine(base string) (string, error) {
	qdir := path.Join(s.dir, QuarantineDir)
	if err := s.fs.MkdirAll(qdir, 0o755); err != nil {
		return "", err
	}
	names, err := s.fs.ReadDir(qdir)
	if err != nil {
		return "", err
	}
	name := base
	for i := 1; slices.Contains(names, name); i++ {
		name = fmt.Sprintf("%s.%d", base, i)
	}
	dst := path.Join(qdir, name)
	if err := s.fs.Rename(path.Join(s.dir, base), dst); err != nil {
		return "", err
	}
	if err := s.fs.SyncDir(qdir); err != nil {
		return dst, err
	}
	return dst, s.fs.SyncDir(s.dir)
}

// quarantined returns the number of checkpoint files in quarantine/.
func (s *Store) quarantined() (int, error) {
	names, err := s.fs.ReadDir(path.Join(s.dir, QuarantineDir))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint: list quarantine: %w", err)
	}
	n := 0
	for _, name := range names {
		if strings.Contains(name, Ext) {
			n++
		}
	}
	return n, nil
}
