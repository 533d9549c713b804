// Package faultfs is an in-memory disk.FS for crash and error-injection
// tests. It counts every operation, can fail the i-th one (once, or from
// then on), and can produce the file system a crash would leave behind:
// power loss keeps only what was synced (file contents by File.Sync,
// directory entries by SyncDir), a process crash keeps everything written.
package faultfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// ErrInjected is the error returned by an injected failure.
var ErrInjected = errors.New("faultfs: injected failure")

// CrashMode says what survives a crash.
type CrashMode int

const (
	// PowerLoss keeps synced file contents and synced directory entries.
	PowerLoss CrashMode = iota
	// ProcessCrash keeps everything written (the operating system still
	// writes its cache back after kill -9).
	ProcessCrash
	// TornWrites is PowerLoss, except that a file whose unsynced writes
	// only appended to its synced contents keeps the first half of the
	// appended bytes.
	TornWrites
)

func (m CrashMode) String() string {
	switch m {
	case ProcessCrash:
		return "process-crash"
	case TornWrites:
		return "torn-writes"
	}
	return "power-loss"
}

type inode struct {
	data   []byte
	synced []byte
	// dirty is the lowest offset changed since the last sync.
	dirty int
}

func (ino *inode) touch(off int) { ino.dirty = min(ino.dirty, off) }

// FS is an in-memory file system. It is safe for concurrent use.
type FS struct {
	mu       sync.Mutex
	files    map[string]*inode // current namespace
	durable  map[string]*inode // namespace as of the last SyncDir of each directory
	dirs     map[string]bool
	ops      int
	failAt   int
	sticky   bool
	injected []string
	capacity int64 // bytes all files may hold; 0: unlimited
}

var _ disk.FS = (*FS)(nil)

// New returns an empty file system with the root directory "/".
func New() *FS {
	return &FS{files: map[string]*inode{}, durable: map[string]*inode{}, dirs: map[string]bool{"/": true, ".": true}, failAt: -1}
}

// FailAt makes the i-th operation from now (0-based) fail with
// ErrInjected; with sticky, every later operation fails too. A failing
// write writes the first half of its bytes. i < 0 disables injection.
func (f *FS) FailAt(i int, sticky bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i < 0 {
		f.failAt = -1
		return
	}
	f.failAt, f.sticky = f.ops+i, sticky
}

// SetCapacity limits the bytes all files together may hold (0: no
// limit). Writes that would go beyond write what fits and fail with
// ENOSPC, as a full file system does.
func (f *FS) SetCapacity(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.capacity = n
}

// Used returns the bytes all files hold.
func (f *FS) Used() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usedLocked()
}

func (f *FS) usedLocked() int64 {
	var n int64
	seen := map[*inode]bool{}
	for _, ino := range f.files {
		if !seen[ino] {
			seen[ino] = true
			n += int64(len(ino.data))
		}
	}
	return n
}

// room returns how many of want bytes may be added to the file system.
func (f *FS) room(want int64) int64 {
	if f.capacity <= 0 || want <= 0 {
		return want
	}
	return max(0, min(want, f.capacity-f.usedLocked()))
}

// Ops returns the number of operations so far.
func (f *FS) Ops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// Injected describes the operations that failed by injection.
func (f *FS) Injected() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.injected)
}

// op counts one operation and says whether it must fail.
func (f *FS) op(desc string) error {
	i := f.ops
	f.ops++
	if f.failAt >= 0 && (i == f.failAt || f.sticky && i > f.failAt) {
		f.injected = append(f.injected, fmt.Sprintf("#%d %s", i, desc))
		return fmt.Errorf("%s: %w", desc, ErrInjected)
	}
	return nil
}

func clean(name string) string { return path.Clean(name) }

// Crash returns the file system a crash would leave. f itself is not
// changed and can still be used (its handles do not affect the result).
func (f *FS) Crash(mode CrashMode) *FS {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := New()
	for d := range f.dirs {
		out.dirs[d] = true
	}
	ns := f.durable
	if mode == ProcessCrash {
		ns = f.files
	}
	copies := map[*inode]*inode{}
	for name, ino := range ns {
		c, ok := copies[ino]
		if !ok {
			var data []byte
			switch mode {
			case ProcessCrash:
				data = slices.Clone(ino.data)
			case TornWrites:
				data = slices.Clone(ino.synced)
				if len(ino.data) > len(ino.synced) && bytes.HasPrefix(ino.data, ino.synced) {
					extra := ino.data[len(ino.synced):]
					data = append(data, extra[:len(extra)/2]...)
				}
			default:
				data = slices.Clone(ino.synced)
			}
			c = &inode{data: data, synced: slices.Clone(data), dirty: len(data)}
			copies[ino] = c
		}
		out.files[name] = c
		out.durable[name] = c
	}
	return out
}

// ReadFile returns a file's current contents without counting an
// operation.
func (f *FS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ino, ok := f.files[clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(ino.data), nil
}

// WriteFile replaces a file's contents, durably, without counting an
// operation; tests use it to damage files. The directory must exist.
func (f *FS) WriteFile(name string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = clean(name)
	if !f.dirs[path.Dir(name)] {
		return &fs.PathError{Op: "write", Path: name, Err: fs.ErrNotExist}
	}
	ino, ok := f.files[name]
	if !ok {
		ino = &inode{}
		f.files[name] = ino
	}
	ino.data, ino.synced, ino.dirty = slices.Clone(data), slices.Clone(data), len(data)
	f.durable[name] = ino
	return nil
}

// Names lists the files, sorted.
func (f *FS) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.files))
	for n := range f.files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// OpenFile implements disk.FS.
func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = clean(name)
	if err := f.op("open " + name); err != nil {
		return nil, err
	}
	if !f.dirs[path.Dir(name)] || f.dirs[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	ino, ok := f.files[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		ino = &inode{}
		f.files[name] = ino
	}
	if flag&os.O_TRUNC != 0 {
		ino.data = nil
		ino.touch(0)
	}
	return &file{fs: f, ino: ino, name: name, writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

// Rename implements disk.FS.
func (f *FS) Rename(oldname, newname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldname, newname = clean(oldname), clean(newname)
	if err := f.op("rename " + oldname + " " + newname); err != nil {
		return err
	}
	ino, ok := f.files[oldname]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if !f.dirs[path.Dir(newname)] {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	f.files[newname] = ino
	delete(f.files, oldname)
	return nil
}

// Remove implements disk.FS.
func (f *FS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = clean(name)
	if err := f.op("remove " + name); err != nil {
		return err
	}
	if _, ok := f.files[name]; ok {
		delete(f.files, name)
		return nil
	}
	if f.dirs[name] {
		for n := range f.files {
			if path.Dir(n) == name {
				return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
			}
		}
		delete(f.dirs, name)
		return nil
	}
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
}

// MkdirAll implements disk.FS. Directories are durable at once.
func (f *FS) MkdirAll(dir string, perm fs.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = clean(dir)
	if err := f.op("mkdir " + dir); err != nil {
		return err
	}
	for d := dir; !f.dirs[d]; d = path.Dir(d) {
		if _, ok := f.files[d]; ok {
			return &fs.PathError{Op: "mkdir", Path: d, Err: errors.New("not a directory")}
		}
		f.dirs[d] = true
	}
	return nil
}

// ReadDir implements disk.FS.
func (f *FS) ReadDir(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = clean(dir)
	if err := f.op("readdir " + dir); err != nil {
		return nil, err
	}
	if !f.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []string
	for n := range f.files {
		if path.Dir(n) == dir {
			out = append(out, path.Base(n))
		}
	}
	for d := range f.dirs {
		if d != dir && path.Dir(d) == dir {
			out = append(out, path.Base(d))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Stat implements disk.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = clean(name)
	if err := f.op("stat " + name); err != nil {
		return nil, err
	}
	if ino, ok := f.files[name]; ok {
		return info{name: path.Base(name), size: int64(len(ino.data))}, nil
	}
	if f.dirs[name] {
		return info{name: path.Base(name), dir: true}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// SyncDir implements disk.FS: the entries of dir become durable.
func (f *FS) SyncDir(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = clean(dir)
	if err := f.op("syncdir " + dir); err != nil {
		return err
	}
	if !f.dirs[dir] {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	for n := range f.durable {
		if path.Dir(n) == dir {
			if _, ok := f.files[n]; !ok {
				delete(f.durable, n)
			}
		}
	}
	for n, ino := range f.files {
		if path.Dir(n) == dir {
			f.durable[n] = ino
		}
	}
	return nil
}

type info struct {
	name string
	size int64
	dir  bool
}

func (i info) Name() string { return i.name }
func (i info) Size() int64  { return i.size }
func (i info) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return i.dir }
func (i info) Sys() any           { return nil }

type file struct {
	fs       *FS
	ino      *inode
	name     string
	pos      int64
	writable bool
	closed   bool
}

func (h *file) check(op string) error {
	if err := h.fs.op(op + " " + h.name); err != nil {
		return err
	}
	if h.closed {
		return &fs.PathError{Op: op, Path: h.name, Err: fs.ErrClosed}
	}
	return nil
}

func (h *file) writeAt(p []byte, off int64) {
	h.ino.touch(int(off))
	if end := off + int64(len(p)); end > int64(len(h.ino.data)) {
		h.ino.data = append(h.ino.data, make([]byte, end-int64(len(h.ino.data)))...)
	}
	copy(h.ino.data[off:], p)
}

func (h *file) Write(p []byte) (int, error) {
	n, err := h.WriteAt(p, h.pos)
	h.pos += int64(n)
	return n, err
}

func (h *file) WriteAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("write"); err != nil {
		if errors.Is(err, ErrInjected) && !h.closed && h.writable {
			half := p[:len(p)/2]
			h.writeAt(half, off)
			return len(half), err
		}
		return 0, err
	}
	if !h.writable {
		return 0, &fs.PathError{Op: "write", Path: h.name, Err: fs.ErrPermission}
	}
	if grow := off + int64(len(p)) - int64(len(h.ino.data)); grow > 0 {
		if fit := h.fs.room(grow); fit < grow {
			n := max(0, int64(len(p))-(grow-fit))
			h.writeAt(p[:n], off)
			return int(n), &fs.PathError{Op: "write", Path: h.name, Err: syscall.ENOSPC}
		}
	}
	h.writeAt(p, off)
	return len(p), nil
}

// Allocate implements disk.File: the file grows to off+n with zeros.
func (h *file) Allocate(off, n int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("allocate"); err != nil {
		return err
	}
	if grow := off + n - int64(len(h.ino.data)); grow > 0 {
		if h.fs.room(grow) < grow {
			return &fs.PathError{Op: "allocate", Path: h.name, Err: syscall.ENOSPC}
		}
		h.ino.touch(len(h.ino.data))
		h.ino.data = append(h.ino.data, make([]byte, grow)...)
	}
	return nil
}

func (h *file) ReadAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("read"); err != nil {
		return 0, err
	}
	if off >= int64(len(h.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *file) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("sync"); err != nil {
		return err
	}
	// Only the bytes changed since the last sync are copied.
	ino := h.ino
	from := min(ino.dirty, len(ino.synced), len(ino.data))
	ino.synced = append(ino.synced[:from], ino.data[from:]...)
	ino.dirty = len(ino.data)
	return nil
}

func (h *file) Truncate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("truncate"); err != nil {
		return err
	}
	if grow := size - int64(len(h.ino.data)); grow > 0 && h.fs.room(grow) < grow {
		return &fs.PathError{Op: "truncate", Path: h.name, Err: syscall.ENOSPC}
	}
	h.ino.touch(int(min(size, int64(len(h.ino.data)))))
	if size < int64(len(h.ino.data)) {
		h.ino.data = h.ino.data[:size:size]
	} else {
		h.ino.data = append(h.ino.data, make([]byte, size-int64(len(h.ino.data)))...)
	}
	return nil
}

func (h *file) Size() (int64, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("size"); err != nil {
		return 0, err
	}
	return int64(len(h.ino.data)), nil
}

func (h *file) Close() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return &fs.PathError{Op: "close", Path: h.name, Err: fs.ErrClosed}
	}
	err := h.fs.op("close " + h.name)
	h.closed = true
	return err
}

// String describes the file system (for test failures).
func (f *FS) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	names := make([]string, 0, len(f.files))
	for n := range f.files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ino := f.files[n]
		_, durable := f.durable[n]
		fmt.Fprintf(&b, "%s %d bytes (%d synced, entry durable %v)\n", n, len(ino.data), len(ino.synced), durable)
	}
	return b.String()
}
