package file

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// A file source is replayable: its position in a checkpoint is the file
// being read and the offset just after the last line whose rows it has
// emitted, so a pipeline recovering from a checkpoint reads on from there
// instead of keeping a copy of the input.
var _ engine.Replayable = (*Source)(nil)

// Checkpoint positions (see encodePos) start with posTag and posVersion.
const (
	posTag     = 'F'
	posVersion = 1
	// maxPosName bounds the file name a position holds.
	maxPosName = 4096
)

// errBadPos is wrapped by every error about an unreadable position.
var errBadPos = errors.New("file source: unreadable checkpoint position")

// encodePos encodes a checkpoint position, compactly:
//
//	'F' 1                       tag and version
//	uvarint n, n bytes          file name (relative to the pipeline file's
//	                            directory when under it), "" before the first file
//	uvarint offset, uvarint line
//	uvarint headLen, u32 head   CRC32-C of the file's first headLen bytes
//	uvarint beforeLen, u32 before  CRC32-C of the beforeLen bytes before offset
//	u32 crc                     CRC32-C of everything before it
//
// The integers are little endian.
func encodePos(name string, p *filePos) []byte {
	b := make([]byte, 0, 2+len(name)+6*binary.MaxVarintLen64+12)
	b = append(b, posTag, posVersion)
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(p.Offset))
	b = binary.AppendUvarint(b, uint64(p.Line))
	b = binary.AppendUvarint(b, uint64(p.HeadLen))
	b = binary.LittleEndian.AppendUint32(b, p.Head)
	b = binary.AppendUvarint(b, uint64(p.BeforeLen))
	b = binary.LittleEndian.AppendUint32(b, p.Before)
	return binary.LittleEndian.AppendUint32(b, disk.CRC(b))
}

// decodePos decodes a checkpoint position, returning the file's name as
// recorded. It refuses anything encodePos cannot have written.
func decodePos(b []byte) (name string, p filePos, err error) {
	bad := func(why string) (string, filePos, error) {
		return "", filePos{}, fmt.Errorf("%w: %s", errBadPos, why)
	}
	switch {
	case len(b) < 2:
		return bad("too short")
	case b[0] != posTag:
		return bad(fmt.Sprintf("not the position of a file source (tag %#x)", b[0]))
	case b[1] != posVersion:
		return bad(fmt.Sprintf("version %d; this build reads version %d", b[1], posVersion))
	case len(b) < 6:
		return bad("too short")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if disk.CRC(body) != sum {
		return bad("checksum mismatch")
	}
	rest := body[2:]
	uv := func(max uint64) (uint64, bool) {
		v, n := binary.Uvarint(rest)
		if n <= 0 || v > max {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	u32 := func() (uint32, bool) {
		if len(rest) < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		return v, true
	}
	n, ok := uv(maxPosName)
	if !ok || uint64(len(rest)) < n {
		return bad("bad file name")
	}
	name, rest = string(rest[:n]), rest[n:]
	if strings.IndexByte(name, 0) >= 0 {
		return bad("bad file name")
	}
	off, ok1 := uv(math.MaxInt64)
	line, ok2 := uv(math.MaxInt32)
	headLen, ok3 := uv(headBytes)
	head, ok4 := u32()
	beforeLen, ok5 := uv(headBytes)
	before, ok6 := u32()
	switch {
	case !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6):
		return bad("truncated")
	case len(rest) != 0:
		return bad("trailing bytes")
	case beforeLen > off:
		return bad("more bytes checked before the offset than the offset")
	case name == "" && (off != 0 || line != 0 || headLen != 0 || head != 0 || beforeLen != 0 || before != 0):
		return bad("an offset without a file")
	}
	return name, filePos{Offset: int64(off), Line: int(line), Head: head, HeadLen: int(headLen), Before: before, BeforeLen: int(beforeLen)}, nil
}

// nameOf is how a position names the file at path: relative to the
// pipeline file's directory when under it, so that a checkpoint survives
// the directory being moved.
func (s *Source) nameOf(path string) string {
	if s.dir == "" {
		return path
	}
	if rel, err := filepath.Rel(s.dir, path); err == nil && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel) {
		return rel
	}
	return path
}

// pathOf is the inverse of nameOf.
func (s *Source) pathOf(name string) string {
	if filepath.IsAbs(name) || s.dir == "" {
		return filepath.Clean(name)
	}
	return filepath.Join(s.dir, name)
}

// Position returns the checkpoint position just after the last line whose
// rows the source has emitted; before Run, where Run starts. It implements
// engine.Replayable.
func (s *Source) Position() []byte {
	if p := s.ckpt.Load(); p != nil {
		return *p
	}
	return encodePos("", &filePos{})
}

// ResumeAt makes Run start at pos, a position an earlier Position
// returned: Run then emits the rows that followed pos the first time, in
// the same batches when the batch policy is the same. A position that is
// not one, or of a file that is no longer there or changed (its first
// kilobyte, the kilobyte before the offset, or its length falls short of
// the offset), is refused with an error. The position file of the source
// (resume) is then not read. ResumeAt implements engine.Replayable.
func (s *Source) ResumeAt(pos []byte) error {
	name, p, err := decodePos(pos)
	if err != nil {
		return err
	}
	if name != "" {
		p.File = s.pathOf(name)
		if err := s.checkFile(&p, name); err != nil {
			return err
		}
	}
	s.resume = &p
	cp := append([]byte(nil), pos...)
	s.ckpt.Store(&cp)
	return nil
}

// Committed implements engine.Replayable: a file needs nothing forgotten.
func (*Source) Committed([]byte) {}

// checkFile checks that the file of p is the one p was taken in.
func (s *Source) checkFile(p *filePos, name string) error {
	fi, err := os.Stat(p.File)
	if err != nil {
		return fmt.Errorf("file source: the checkpoint position is in %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("file source: the checkpoint position is in %s, which is no longer a regular file", name)
	}
	f, err := os.Open(p.File)
	if err != nil {
		return fmt.Errorf("file source: the checkpoint position is in %s: %w", name, err)
	}
	defer f.Close()
	begin, size := fileHead(f)
	return sameFile(f, begin, size, p, name)
}

// sameFile checks that f, which begins with begin and holds size bytes,
// is the file the checkpoint position p was taken in: the same first
// bytes, at least p.Offset bytes, the same bytes before p.Offset.
func sameFile(f io.ReaderAt, begin []byte, size int64, p *filePos, name string) error {
	other := func(why string) error {
		return fmt.Errorf("file source: %s is not the file the checkpoint was taken in (%s): its position (line %d, byte %d) does not apply to it",
			name, why, p.Line, p.Offset)
	}
	if p.HeadLen > 0 && !sameHead(begin, p) {
		return other("its first bytes differ")
	}
	if size < p.Offset {
		return other(fmt.Sprintf("it holds %d bytes", size))
	}
	if p.BeforeLen > 0 {
		buf := make([]byte, p.BeforeLen)
		if _, err := f.ReadAt(buf, p.Offset-int64(p.BeforeLen)); err != nil {
			return fmt.Errorf("file source: %s: %w", name, err)
		}
		if disk.CRC(buf) != p.Before {
			return other("the bytes before the position differ")
		}
	}
	return nil
}

// seal completes the position of the last appended line with the check
// of the bytes before it, reading them from the open file (once a batch).
func (r *run) seal() {
	if r.sealed || r.at.File == "" || r.cur == nil || r.curPath != r.at.File || r.curPipe {
		return
	}
	k := min(r.at.Offset, headBytes)
	if cap(r.sealBuf) < headBytes {
		r.sealBuf = make([]byte, headBytes)
	}
	buf := r.sealBuf[:k]
	if n, _ := r.cur.ReadAt(buf, r.at.Offset-k); int64(n) == k {
		r.at.Before, r.at.BeforeLen = disk.CRC(buf), int(k)
	}
	r.sealed = true
}
