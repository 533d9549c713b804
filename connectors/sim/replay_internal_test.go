package sim

import (
	"encoding/binary"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// FuzzDecodePos: a garbled or hostile checkpoint position is refused with
// an error, never a panic; what is accepted encodes back to itself.
func FuzzDecodePos(f *testing.F) {
	f.Add(encodePos(0, 0))
	f.Add(encodePos(1<<63+5, 1<<62))
	f.Add([]byte("S\x01"))
	f.Add([]byte("S\x01\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// As given, and with a valid checksum, to get past it.
		check(t, b)
		check(t, binary.LittleEndian.AppendUint32(append([]byte(nil), b...), disk.CRC(b)))
	})
}

// check decodes b; what decodes must encode back to the same.
func check(t *testing.T, b []byte) {
	fp, rows, err := decodePos(b)
	if err != nil {
		return
	}
	if rows < 0 {
		t.Fatalf("accepted %d rows", rows)
	}
	if fp2, rows2, err := decodePos(encodePos(fp, rows)); err != nil || fp2 != fp || rows2 != rows {
		t.Fatalf("%q decodes to %d %d, which does not encode back (%v)", b, fp, rows, err)
	}
}
