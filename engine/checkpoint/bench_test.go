package checkpoint_test

import (
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/checkpoint"
)

// bigCheckpoint holds one 50 MB state and a few small entries.
func bigCheckpoint(epoch uint64) *engine.Checkpoint {
	c := ck(epoch)
	c.States["big"] = &engine.State{Kind: "window", Version: 1, Data: randomBytes(50<<20, 7)}
	return c
}

func fileSize(b *testing.B, c *engine.Checkpoint) int64 {
	data, err := checkpoint.Encode(c)
	if err != nil {
		b.Fatal(err)
	}
	return int64(len(data))
}

// BenchmarkSave50MB saves a checkpoint of ~50 MB on the local disk
// (encode, write, fsync, rename, directory fsync, delete the oldest).
func BenchmarkSave50MB(b *testing.B) {
	s, err := checkpoint.Open(b.TempDir(), checkpoint.Options{Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	c := bigCheckpoint(0)
	b.SetBytes(fileSize(b, c))
	for i := 0; b.Loop(); i++ {
		c.Epoch = uint64(i)
		if err := s.Save(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad50MB loads a checkpoint of ~50 MB from the local disk
// (read, checksum, decode).
func BenchmarkLoad50MB(b *testing.B) {
	s, err := checkpoint.Open(b.TempDir(), checkpoint.Options{Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	c := bigCheckpoint(1)
	if err := s.Save(c); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fileSize(b, c))
	for b.Loop() {
		if _, err := s.Load(); err != nil {
			b.Fatal(err)
		}
	}
}
