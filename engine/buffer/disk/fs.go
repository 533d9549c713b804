package disk

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// FS is the file system a buffer uses. Every file operation on a buffer
// directory goes through it, so that tests can inject failures, fill the
// disk and simulate crashes.
//
// Names are slash-separated paths as accepted by package os. Implementations
// must be safe for concurrent use and give POSIX semantics: a removed or
// renamed file stays readable through handles already open, Rename replaces
// the target, and nothing is durable before it is synced (file contents by
// File.Sync, directory entries, including creations, renames and removals,
// by SyncDir of the directory holding them).
type FS interface {
	// OpenFile opens a file with os flags (os.O_RDONLY, os.O_RDWR,
	// os.O_CREATE, os.O_TRUNC, os.O_EXCL, ...).
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Rename renames a file, replacing newname if it exists.
	Rename(oldname, newname string) error
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string, perm fs.FileMode) error
	// ReadDir returns the names of the entries of a directory, sorted.
	ReadDir(dir string) ([]string, error)
	// Stat describes a file.
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the entries of a directory durable.
	SyncDir(dir string) error
}

// File is an open file. A File is used by one goroutine at a time, except
// that ReadAt, Sync and Size may run concurrently with WriteAt.
type File interface {
	io.Writer
	io.WriterAt
	io.ReaderAt
	// Sync makes the file's contents durable.
	Sync() error
	// Truncate changes the size of the file.
	Truncate(size int64) error
	// Size returns the current size of the file.
	Size() (int64, error)
	// Allocate reserves the disk space of bytes [off, off+n) so that
	// later writes into that range need no new space; the file grows to
	// at least off+n bytes, the new bytes reading as zeros.
	Allocate(off, n int64) error
	// Close closes the file. It is not idempotent.
	Close() error
}

// OS is the FS of the operating system.
var OS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (f osFile) Allocate(off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := allocate(f.File, off, n)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENOSYS) {
		return err
	}
	// No fallocate on this file system: write the zeros.
	size, err := f.Size()
	if err != nil {
		return err
	}
	if end := off + n; end > size {
		_, err = f.WriteAt(make([]byte, end-max(off, size)), max(off, size))
	}
	return err
}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (fs.FileInfo, error)       { return os.Stat(name) }

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// IsNoSpace reports whether err says the file system is full (ENOSPC,
// EDQUOT or ErrNoSpace).
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, ErrNoSpace)
}

// ReadFile reads a whole file through fsys.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if k, err := f.ReadAt(buf, 0); k < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// WriteFileAtomic publishes data as name: it writes name.tmp, syncs it,
// renames it over name and syncs the directory.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = fsys.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		_ = fsys.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		_ = fsys.Remove(tmp)
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		_ = fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(filepath.Dir(name))
}
