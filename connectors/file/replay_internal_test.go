package file

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
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

// BenchmarkBatchPosition measures what flush spends on the checkpoint
// position of each batch: the check of the kilobyte before the offset
// (seal, one read of the open file) and the encoded position. It is
// built for every batch whether or not a checkpoint follows: a pipeline
// that takes checkpoints asks for it after every batch anyway, and the
// check reads the file only the run has open.
func BenchmarkBatchPosition(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "in", "a.csv")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte("1700000000000,WT0001,1.5,2.5\n"), 4096), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := &run{Source: &Source{dir: dir}, cur: f, curPath: path}
	r.at = filePos{File: path, Offset: 64 << 10, Line: 2260}
	for _, c := range []struct {
		name       string
		seal, code bool
	}{{"seal", true, false}, {"encode", false, true}, {"both", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.seal {
					r.sealed = false
					r.seal()
				}
				if c.code {
					pos := encodePos(r.nameOf(r.at.File), &r.at)
					r.ckpt.Store(&pos)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1024, "ns/row@1024")
		})
	}
}
