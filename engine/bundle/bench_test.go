package bundle

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// BenchmarkVerifyUnpack verifies and unpacks a release of 10 pipelines and
// a 10 MiB ML file (random bytes, so zstd cannot shrink it).
func BenchmarkVerifyUnpack(b *testing.B) {
	key := testKey(1)
	files := map[string]string{}
	for i := range 10 {
		files[fmt.Sprintf("pipelines/p%02d.yaml", i)] = fmt.Sprintf("sources:\n  s: {type: sim, turbines: %d}\nsinks:\n  o: {type: stdout, input: s}\n", i)
	}
	ml := make([]byte, 10<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(ml)
	files["ml/model.onnx"] = string(ml)
	data := buildBundle(b, files, key)
	trust := NewTrust(pub(key))
	var total int64
	for _, v := range files {
		total += int64(len(v))
	}
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			if _, err := Verify(bytes.NewReader(data), trust); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unpack", func(b *testing.B) {
		b.SetBytes(total)
		parent := b.TempDir()
		for b.Loop() {
			_, staged, err := Unpack(bytes.NewReader(data), trust, parent)
			if err != nil {
				b.Fatal(err)
			}
			os.RemoveAll(staged)
		}
	})
}
