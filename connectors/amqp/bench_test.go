package amqp_test

import (
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkPublish publishes to a durable queue of the local RabbitMQ
// server with publisher confirms.
func BenchmarkPublish(b *testing.B) {
	local(b).Close()
	outboundtest.BenchPublish(b, outboundtest.DefaultBenchCases, func(b *testing.B, c outboundtest.BenchCase) *outbound.Publisher {
		queue := "sluice.bench." + outboundtest.Suffix()
		p := build(b, fmt.Sprintf("queue: %s\nencoding: %s", queue, c.Encoding))
		b.Cleanup(func() {
			_ = p.Close()
			conn := local(b)
			defer conn.Close()
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(queue, false, false, false)
				ch.Close()
			}
		})
		return p
	})
}
