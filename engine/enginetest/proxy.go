package enginetest

import (
	"testing"

	"github.com/sluice-edge/sluice/engine/netlink"
)

// Proxy is a netlink.Link for a test: a TCP link to a target that the
// test can break (Cut) or take down (Down, Up) without touching the
// server behind it; it is closed when the test ends.
type Proxy struct{ *netlink.Link }

// NewProxy starts a proxy to target (host:port).
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := netlink.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return &Proxy{Link: l}
}

// Cut closes every connection the proxy carries; new ones are accepted.
func (p *Proxy) Cut() { p.Break() }
