package file

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// FuzzDecodePos: a garbled or hostile checkpoint position is refused with
// an error, never a panic; what is accepted encodes back to a position
// that decodes to the same.
func FuzzDecodePos(f *testing.F) {
	f.Add(encodePos("", &filePos{}))
	f.Add(encodePos("in/a.csv", &filePos{Offset: 1 << 40, Line: 12345, Head: 7, HeadLen: 1024, Before: 9, BeforeLen: 1024}))
	f.Add(encodePos("/abs/b.csv", &filePos{Offset: 3, Line: 1, HeadLen: 3, BeforeLen: 3}))
	f.Add([]byte{})
	f.Add([]byte("F\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// As given, and with a valid checksum, to get past it.
		check(t, b)
		check(t, binary.LittleEndian.AppendUint32(bytes.Clone(b), disk.CRC(b)))
	})
}

// check decodes b; what decodes must encode back to the same, and be
// within bounds.
func check(t *testing.T, b []byte) {
	name, p, err := decodePos(b)
	if err != nil {
		return
	}
	name2, p2, err := decodePos(encodePos(name, &p))
	if err != nil || name2 != name || p2 != p {
		t.Fatalf("%q decodes to %q %+v, which encodes to %q %+v (%v)", b, name, p, name2, p2, err)
	}
	if p.Offset < 0 || p.Line < 0 || p.BeforeLen > headBytes || int64(p.BeforeLen) > p.Offset {
		t.Fatalf("accepted %+v", p)
	}
}

// TestPosEncoding: a position is small, and every truncation of it is
// refused.
func TestPosEncoding(t *testing.T) {
	b := encodePos("data/turbine-0001.csv", &filePos{Offset: 123456789, Line: 1000000, Head: 0xdeadbeef, HeadLen: 1024, Before: 1, BeforeLen: 1024})
	if len(b) > 60 {
		t.Errorf("a position takes %d bytes", len(b))
	}
	for i := range len(b) {
		if _, _, err := decodePos(b[:i]); err == nil {
			t.Fatalf("the first %d bytes of a position are accepted", i)
		}
	}
	if _, _, err := decodePos(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("a trailing byte is accepted")
	}
}
