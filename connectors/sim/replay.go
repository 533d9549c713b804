package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// A sim source is replayable: a farm's rows depend on its configuration
// and seed and on how many rows came before, never on the wall clock (the
// rate only paces them), so its position in a checkpoint is a row count.
var _ engine.Replayable = (*Source)(nil)

// Checkpoint positions (see encodePos) start with posTag and posVersion.
const (
	posTag     = 'S'
	posVersion = 1
	posLen     = 2 + 8 + 4 // without the row count
)

// errBadPos is wrapped by every error about an unreadable position.
var errBadPos = errors.New("sim: unreadable checkpoint position")

// fingerprint identifies the rows of a farm configuration: the settings
// that change them (not the rate, not the number of rows).
func fingerprint(c Config) uint64 {
	h := fnv.New64a()
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, uint64(c.Turbines))
	b = binary.LittleEndian.AppendUint64(b, uint64(c.Interval))
	b = binary.LittleEndian.AppendUint64(b, uint64(c.Start.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, c.Seed)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.Faults))
	_, _ = h.Write(b)
	return h.Sum64()
}

// encodePos encodes a checkpoint position: 'S', version 1, the farm's
// fingerprint (u64), the rows produced (uvarint) and a CRC32-C of the
// bytes before it (u32), little endian.
func encodePos(fp uint64, rows int64) []byte {
	b := make([]byte, 0, posLen+binary.MaxVarintLen64)
	b = append(b, posTag, posVersion)
	b = binary.LittleEndian.AppendUint64(b, fp)
	b = binary.AppendUvarint(b, uint64(rows))
	return binary.LittleEndian.AppendUint32(b, disk.CRC(b))
}

// decodePos decodes a checkpoint position, refusing anything encodePos
// cannot have written.
func decodePos(b []byte) (fp uint64, rows int64, err error) {
	bad := func(why string) (uint64, int64, error) {
		return 0, 0, fmt.Errorf("%w: %s", errBadPos, why)
	}
	switch {
	case len(b) < 2:
		return bad("too short")
	case b[0] != posTag:
		return bad(fmt.Sprintf("not the position of a sim source (tag %#x)", b[0]))
	case b[1] != posVersion:
		return bad(fmt.Sprintf("version %d; this build reads version %d", b[1], posVersion))
	case len(b) < posLen+1:
		return bad("too short")
	}
	body := b[:len(b)-4]
	if disk.CRC(body) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return bad("checksum mismatch")
	}
	fp = binary.LittleEndian.Uint64(body[2:])
	v, n := binary.Uvarint(body[10:])
	switch {
	case n <= 0 || v > math.MaxInt64:
		return bad("bad row count")
	case 10+n != len(body):
		return bad("trailing bytes")
	}
	return fp, int64(v), nil
}

// Position returns the checkpoint position just after the last row the
// source has emitted (the rows produced so far); before Run, where Run
// starts. It implements engine.Replayable.
func (s *Source) Position() []byte {
	if p := s.ckpt.Load(); p != nil {
		return *p
	}
	return encodePos(s.fp, 0)
}

// ResumeAt makes Run start at pos, a position an earlier Position
// returned: Run then emits the rows a run that never stopped would have
// emitted after pos (in the same batches when it is not paced and the
// batch size is the same). A position that is not one, of another farm
// (turbines, interval, start, seed or faults changed) or past the rows to
// produce is refused with an error. The position file of the source
// (resume) is then not read. ResumeAt implements engine.Replayable.
func (s *Source) ResumeAt(pos []byte) error {
	fp, rows, err := decodePos(pos)
	if err != nil {
		return err
	}
	if s.farm != nil && fp != s.fp {
		return fmt.Errorf("sim: the checkpoint position is of another farm (its turbines, interval, start, seed or faults changed): its %d rows do not apply", rows)
	}
	if s.total > 0 && rows > s.total {
		return fmt.Errorf("sim: the checkpoint position is after %d rows, more than the %d to produce", rows, s.total)
	}
	s.resumeAt = rows
	s.resumed = true
	p := encodePos(s.fp, rows)
	s.ckpt.Store(&p)
	return nil
}

// Committed implements engine.Replayable: a farm needs nothing forgotten.
func (*Source) Committed([]byte) {}
