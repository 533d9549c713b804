package kafka_test

import (
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkPublish produces to an in-process kfake cluster (there is no
// Kafka server here), so it measures the client side more than a broker.
func BenchmarkPublish(b *testing.B) {
	c := cluster(b)
	outboundtest.BenchPublish(b, outboundtest.DefaultBenchCases, func(b *testing.B, bc outboundtest.BenchCase) *outbound.Publisher {
		p := build(b, c, fmt.Sprintf("topic: bench.%s\nencoding: %s\nmax_message_bytes: 4000000", outboundtest.Suffix(), bc.Encoding))
		b.Cleanup(func() { _ = p.Close() })
		return p
	})
}
