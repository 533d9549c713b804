package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/statecodec"
)

// Magic opens every checkpoint file.
const Magic = "SLUICECP"

// Version is the format version this package writes and the only one it
// reads.
const Version = 1

const (
	headerLen   = len(Magic) + 4 + 8 // magic, version, body length
	checksumLen = 4
	// Overhead is the number of bytes a file holds besides its body.
	Overhead = headerLen + checksumLen
	// maxNameLen bounds a component name or a state kind.
	maxNameLen = 1 << 16
)

// ErrCorrupt is wrapped by every error of Decode: the bytes are not a
// checkpoint this release can read.
var ErrCorrupt = errors.New("checkpoint: damaged")

// Encode returns the file form of c (see docs/format/checkpoint.md):
// the header, the body and the checksum. Names are written in sorted
// order, so the same checkpoint always gives the same bytes.
func Encode(c *engine.Checkpoint) ([]byte, error) {
	if c == nil {
		return nil, errors.New("checkpoint: nil checkpoint")
	}
	size := Overhead + 6*binary.MaxVarintLen64
	for _, m := range []map[string][]byte{c.Sources, c.Sinks} {
		for name, pos := range m {
			if len(name) > maxNameLen {
				return nil, fmt.Errorf("checkpoint: name of %d bytes, more than %d", len(name), maxNameLen)
			}
			size += 2*binary.MaxVarintLen64 + len(name) + len(pos)
		}
	}
	for name, st := range c.States {
		if len(name) > maxNameLen {
			return nil, fmt.Errorf("checkpoint: name of %d bytes, more than %d", len(name), maxNameLen)
		}
		size += 2*binary.MaxVarintLen64 + len(name) + 1
		if st != nil {
			if len(st.Kind) > maxNameLen {
				return nil, fmt.Errorf("checkpoint: state of %q: kind of %d bytes, more than %d", name, len(st.Kind), maxNameLen)
			}
			size += 3*binary.MaxVarintLen64 + len(st.Kind) + len(st.Data)
		}
	}

	buf := make([]byte, headerLen, size)
	copy(buf, Magic)
	binary.LittleEndian.PutUint32(buf[len(Magic):], Version)
	w := statecodec.NewWriter(buf)
	w.Uvarint(c.Epoch)
	w.Varint(c.Time.Unix())
	w.Uvarint(uint64(c.Time.Nanosecond()))
	writeBlobs(w, c.Sources)
	names := slices.Sorted(maps.Keys(c.States))
	w.Uvarint(uint64(len(names)))
	for _, name := range names {
		st := c.States[name]
		w.String(name)
		w.Bool(st != nil)
		if st != nil {
			w.String(st.Kind)
			w.Varint(int64(st.Version))
			w.Blob(st.Data)
		}
	}
	writeBlobs(w, c.Sinks)
	out := w.Bytes()
	binary.LittleEndian.PutUint64(out[len(Magic)+4:], uint64(len(out)-headerLen))
	return binary.LittleEndian.AppendUint32(out, disk.CRC(out)), nil
}

func writeBlobs(w *statecodec.Writer, m map[string][]byte) {
	names := slices.Sorted(maps.Keys(m))
	w.Uvarint(uint64(len(names)))
	for _, name := range names {
		w.String(name)
		w.Blob(m[name])
	}
}

// Decode reads a checkpoint file written by Encode. It treats data as
// hostile: every field is checked, every declared length is checked
// against the bytes that remain before anything is allocated, and an
// error (wrapping ErrCorrupt) says what is wrong. The maps of the result
// are never nil. State data alias data; positions and marks are copies.
func Decode(data []byte) (*engine.Checkpoint, error) {
	if len(data) >= len(Magic) && string(data[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrCorrupt, data[:len(Magic)])
	}
	if len(data) < headerLen {
		return nil, fmt.Errorf("%w: truncated: %d bytes, the header alone is %d", ErrCorrupt, len(data), headerLen)
	}
	if v := binary.LittleEndian.Uint32(data[len(Magic):]); v != Version {
		return nil, fmt.Errorf("%w: format version %d, this release reads version %d", ErrCorrupt, v, Version)
	}
	bodyLen := binary.LittleEndian.Uint64(data[len(Magic)+4:])
	if have := uint64(len(data) - Overhead); len(data) < Overhead || bodyLen > have {
		return nil, fmt.Errorf("%w: truncated: the header declares a body of %d bytes, the file holds %d bytes", ErrCorrupt, bodyLen, len(data))
	} else if bodyLen < have {
		return nil, fmt.Errorf("%w: %d bytes after the checksum", ErrCorrupt, have-bodyLen)
	}
	end := len(data) - checksumLen
	if want, got := binary.LittleEndian.Uint32(data[end:]), disk.CRC(data[:end]); want != got {
		return nil, fmt.Errorf("%w: checksum mismatch: stored %08x, computed %08x", ErrCorrupt, want, got)
	}
	c, err := decodeBody(data[headerLen:end])
	if err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrCorrupt, err)
	}
	return c, nil
}

func decodeBody(body []byte) (*engine.Checkpoint, error) {
	r := statecodec.NewReader(body)
	c := &engine.Checkpoint{Epoch: r.Uvarint()}
	sec := r.Varint()
	nsec := r.Uint(999_999_999, "nanoseconds")
	c.Time = time.Unix(sec, int64(nsec)).UTC()
	c.Sources = readBlobs(r, "source")
	n := r.Count(math.MaxInt, 2, "states")
	c.States = make(map[string]*engine.State, n)
	prev := ""
	for i := range n {
		name := readName(r, i, &prev, "state")
		if !r.Bool() {
			c.States[name] = nil
			continue
		}
		st := &engine.State{Kind: r.String(maxNameLen, "state kind")}
		st.Version = int(r.Int(math.MinInt, math.MaxInt, "state version"))
		st.Data = r.Blob(math.MaxInt, "state data")
		if r.Err() != nil {
			break
		}
		c.States[name] = st
	}
	c.Sinks = readBlobs(r, "sink")
	if err := r.Done(); err != nil {
		return nil, err
	}
	return c, nil
}

// readName reads the i-th name of a list; names must be in strictly
// increasing order (sorted, no duplicates).
func readName(r *statecodec.Reader, i int, prev *string, what string) string {
	name := r.String(maxNameLen, what+" name")
	if r.Err() == nil && i > 0 && strings.Compare(name, *prev) <= 0 {
		r.Failf("%s name %q after %q: names out of order or repeated", what, name, *prev)
	}
	*prev = name
	return name
}

func readBlobs(r *statecodec.Reader, what string) map[string][]byte {
	n := r.Count(math.MaxInt, 2, what+"s")
	m := make(map[string][]byte, n)
	prev := ""
	for i := range n {
		name := readName(r, i, &prev, what)
		p := r.Blob(math.MaxInt, what+" "+name)
		if r.Err() != nil {
			break
		}
		m[name] = bytes.Clone(p)
		if m[name] == nil {
			m[name] = []byte{}
		}
	}
	return m
}
