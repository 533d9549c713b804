package nats_test

import (
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkPublish publishes to the local JetStream server (file storage).
func BenchmarkPublish(b *testing.B) {
	local(b).Close()
	cases := append(outboundtest.DefaultBenchCases, outboundtest.BenchCase{Encoding: outbound.JSON})
	outboundtest.BenchPublish(b, cases, func(b *testing.B, c outboundtest.BenchCase) *outbound.Publisher {
		sfx := outboundtest.Suffix()
		stream := "SLUICE_BENCH_" + sfx
		p := build(b, fmt.Sprintf("subject: sluice.bench.%s\nstream: %s\nencoding: %s", sfx, stream, c.Encoding))
		b.Cleanup(func() { _ = p.Close(); deleteStreamAt(localURL, stream) })
		return p
	})
}
