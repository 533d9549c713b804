package spec

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxPipelineBytes bounds a pipeline file: real pipelines are a few
// kilobytes, and a larger file costs its size many times over to parse.
const MaxPipelineBytes = 1 << 20

// ReadConfigFile reads a configuration file of at most limit bytes. It
// refuses, without waiting on it, what is not a regular file (a named
// pipe, a device, a socket, a directory), and a file larger than limit.
// Errors are *fs.PathError values naming the file; their reason names the
// limit.
func ReadConfigFile(name string, limit int64) ([]byte, error) {
	f, fi, err := OpenRegular(name, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadRegular(f, fi, limit)
}

// OpenRegular opens name for reading, with flag added to the open flags
// (for example syscall.O_NOFOLLOW). It does not wait on a named pipe, and
// refuses what is not a regular file with an *fs.PathError naming its
// kind. The caller closes the file.
func OpenRegular(name string, flag int) (*os.File, fs.FileInfo, error) {
	// Non-blocking: opening a named pipe must not wait for a writer.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|flag, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("not a regular file (%s): a configuration file must be a regular file", FileKind(fi.Mode()))}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// ReadRegular reads a file OpenRegular opened (fi is its information)
// whole, refusing one of more than limit bytes, also when it grew since.
func ReadRegular(f *os.File, fi fs.FileInfo, limit int64) ([]byte, error) {
	fail := func(err error) error { return &fs.PathError{Op: "read", Path: f.Name(), Err: err} }
	if fi.Size() > limit {
		return nil, fail(fmt.Errorf("%d bytes, larger than the %s limit of a configuration file", fi.Size(), sizeName(limit)))
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fail(err)
	}
	if int64(len(data)) > limit {
		return nil, fail(fmt.Errorf("larger than the %s limit of a configuration file", sizeName(limit)))
	}
	return data, nil
}

// FileKind names the type of a file that is not regular ("a named pipe",
// "a character device", ...), for error messages.
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.Type().String()
}

// sizeName writes a byte count as MiB or KiB when it is a whole number of
// them.
func sizeName(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
