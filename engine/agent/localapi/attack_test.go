package localapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
)

// newAgentServer serves a real agent (without a runner: nothing can be
// applied) whose bundles are at most maxBundle bytes.
func newAgentServer(t *testing.T, maxBundle int64) (*Server, *agent.Agent) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.Open(agent.Options{Dir: filepath.Join(t.TempDir(), "agent"), Edge: "edge-01", Trust: bundle.NewTrust(pub), MaxBundleBytes: maxBundle}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	s, err := Listen("127.0.0.1:0", "tok", a, maxBundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, a
}

// A bundle over max_bundle_bytes is rejected with a report, whether the
// client announces its size or not: the reports hold every bundle refused.
func TestTooLargeIsReported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		chunked bool
	}{{"announced", false}, {"chunked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, a := newAgentServer(t, 1024)
			c := NewClient(s.Addr(), "tok")
			defer c.Close()
			var body io.Reader = bytes.NewReader(make([]byte, 4096))
			size := int64(4096)
			if tc.chunked {
				body, size = io.MultiReader(body), -1
			}
			rep, err := c.Import(context.Background(), body, size, "big.bundle")
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if rep.Outcome != agent.Rejected || rep.File != "big.bundle" || !strings.Contains(rep.Reason, "max_bundle_bytes (1024)") {
				t.Errorf("report %+v", rep)
			}
			rs, err := agent.ReadReports(a.Dir(), agent.DefaultMaxReportBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 || rs[0].Outcome != agent.Rejected || rs[0].File != "big.bundle" || !strings.Contains(rs[0].Reason, "max_bundle_bytes") {
				t.Errorf("reports %+v", rs)
			}
		})
	}
}

// requests without the token are refused before the body is read.
func TestUnauthorizedBodyNotRead(t *testing.T) {
	s, a := newAgentServer(t, 1024)
	for _, auth := range []string{"", "Bearer", "bearer tok", "Bearer tok\x00", "Bearer " + strings.Repeat("t", 4000)} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+ImportPath+"?file=x", bytes.NewReader([]byte("data")))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			// Go's client refuses some header values itself.
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("auth %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	if rs, _ := agent.ReadReports(a.Dir(), agent.DefaultMaxReportBytes); len(rs) != 0 {
		t.Errorf("unauthorized requests left reports: %+v", rs)
	}
}

// Connections that were refused for want of the token do not stay open:
// a process without the token cannot hold every connection the server
// allows and lock out import and status.
func TestRefusedConnectionsDoNotLockOut(t *testing.T) {
	s, _ := newAgentServer(t, 1024)
	for range maxConns {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET " + StatusPath + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("answer %d, want 401", resp.StatusCode)
		}
	}
	c := NewClient(s.Addr(), "tok")
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("the API is locked out by %d refused connections: %v", maxConns, err)
	}
}

// Connections that send their headers slowly (slowloris), as many as the
// server allows and renewed as soon as they are dropped, delay import and
// status by less than a status request's patience.
func TestSlowHeadersDoNotLockOut(t *testing.T) {
	s, _ := newAgentServer(t, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range maxConns + 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				conn, err := net.Dial("tcp", s.Addr())
				if err != nil {
					return
				}
				conn.Write([]byte("GET " + StatusPath + " HTTP/1.1\r\n"))
				// Hold it until the server drops it.
				go func() { <-ctx.Done(); conn.Close() }()
				for ctx.Err() == nil {
					if _, err := conn.Write([]byte("X-A: b\r\n")); err != nil {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
				conn.Close()
			}
		})
	}
	// Let the attackers take every connection.
	time.Sleep(200 * time.Millisecond)
	c := NewClient(s.Addr(), "tok")
	defer c.Close()
	for i := range 3 {
		if err := c.Ping(context.Background()); err != nil {
			t.Fatalf("ping %d while slow clients hold the connections: %v", i, err)
		}
	}
}
