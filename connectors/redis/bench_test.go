package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkPublish appends to a stream of the local Redis server.
func BenchmarkPublish(b *testing.B) {
	local(b).Close()
	outboundtest.BenchPublish(b, outboundtest.DefaultBenchCases, func(b *testing.B, c outboundtest.BenchCase) *outbound.Publisher {
		key := "sluice:bench:" + outboundtest.Suffix()
		p := build(b, fmt.Sprintf("stream: %s\nencoding: %s", key, c.Encoding))
		b.Cleanup(func() {
			_ = p.Close()
			cl := local(b)
			defer cl.Close()
			cl.Del(context.Background(), key)
		})
		return p
	})
}
