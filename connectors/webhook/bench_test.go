package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkPublish posts to an in-process HTTP server that discards the
// bodies.
func BenchmarkPublish(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	outboundtest.BenchPublish(b, outboundtest.DefaultBenchCases, func(b *testing.B, c outboundtest.BenchCase) *outbound.Publisher {
		p := build(b, fmt.Sprintf("url: %s\nencoding: %s", srv.URL, c.Encoding))
		b.Cleanup(func() { _ = p.Close() })
		return p
	})
}
