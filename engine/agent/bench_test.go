package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sluice-edge/sluice/engine/bundle"
)

// BenchmarkApply applies a bundle of 16 files of 64 KiB (1 MiB) each
// iteration: two reads of the bundle (verify, then unpack), the fsyncs, the
// switch of a runner that does nothing, current.json, the report and the
// pruning.
func BenchmarkApply(b *testing.B) {
	key := testKey(1)
	files := map[string]string{}
	for i := range 16 {
		buf := make([]byte, 64<<10)
		rand.Read(buf)
		files[fmt.Sprintf("ml/part-%02d.bin", i)] = string(buf)
	}
	dir := filepath.Join(b.TempDir(), "agent")
	a, err := Open(Options{Dir: dir, Edge: "edge-01", Trust: bundle.NewTrust(pubOf(key)), DiskReserve: 1}, &fakeRunner{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	src := b.TempDir()
	b.SetBytes(16 << 16)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := buildFile(b, src, key, "w", uint64(i+1), nil, files)
		b.StartTimer()
		r, err := a.Apply(name)
		if err != nil || r.Outcome != Applied {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkStatus answers the status of an agent whose reports.jsonl holds
// 4,000 reports (the local API's GET /v1/status).
func BenchmarkStatus(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "agent")
	a, err := Open(Options{Dir: dir, Edge: "edge-01", Trust: bundle.NewTrust(pubOf(testKey(1)))}, &fakeRunner{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	for i := range 4000 {
		r := Report{Time: a.opts.Now().UTC(), Bundle: "w", Version: uint64(i + 1), Outcome: Rejected, Reason: "the bundle's signature is not trusted"}
		if err := a.record(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if st := a.Status(); st.Last == nil || st.Last.Version != 4000 {
			b.Fatal(st.Last)
		}
	}
}
