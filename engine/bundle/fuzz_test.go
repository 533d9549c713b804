package bundle

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Verify and Inspect: they must never
// panic or hang, and never accept what does not match a signed manifest.
// (Unpack reads through the same code while writing; TestHostileBundles
// checks that it leaves nothing behind.) The signature covers only the
// manifest, so mutations of the seeds' content entries reach the content
// checks.
func FuzzOpen(f *testing.F) {
	key := testKey(1)
	trust := NewTrust(pub(key))
	f.Add(buildBundle(f, sampleFiles, key))
	f.Add(buildBundle(f, map[string]string{"models/a": "a", "pipelines/p.yaml": "a: 1\n"}, key))
	for _, c := range hostileCases() {
		if strings.HasPrefix(c.name, "zstd bomb") || c.name == "too many entries" {
			continue // large seeds slow the fuzzer; TestHostileBundles has them
		}
		f.Add(c.data(f))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Verify(bytes.NewReader(data), trust)
		if err == nil {
			if b.Status != SigValid || b.Manifest == nil || b.Manifest.Validate() != nil {
				t.Fatalf("accepted %+v", b)
			}
		}
		Inspect(bytes.NewReader(data), trust)
	})
}
