package localapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/webpage"
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
	for i := range maxConns {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A status without the token, or a hello, which needs none.
		path, want := StatusPath, http.StatusUnauthorized
		if i%2 == 1 {
			path, want = HelloPath+"?nonce="+strings.Repeat("a", 32), http.StatusOK
		}
		if _, err := conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: answer %d, want %d", path, resp.StatusCode, want)
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

// A process that holds the API's port while the engine is stopped never
// receives the token: the client sends it only to a server that proves it
// knows it.
func TestTokenNotSentToImpostor(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	imp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"edge": "edge-01", "engine": true, "proof": "00"}`)
	}))
	defer imp.Close()
	c := NewClient(strings.TrimPrefix(imp.URL, "http://"), "secret-token")
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx); err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "does not know the token") {
		t.Errorf("ping: %v", err)
	}
	if _, err := c.Status(ctx); err == nil {
		t.Error("status: no error")
	}
	if _, err := c.Import(ctx, strings.NewReader("ok"), 2, "x"); err == nil {
		t.Error("import: no error")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range seen {
		if strings.Contains(h, "secret-token") {
			t.Fatalf("the impostor received the token: %q", h)
		}
	}
	if len(seen) == 0 {
		t.Fatal("the client did not ask the impostor anything")
	}
}

// TestSilentConnectionClosed: a connection that sends no request is closed
// once the header deadline (1 s) has passed, so that silent clients cannot
// hold the server's few connections.
func TestSilentConnectionClosed(t *testing.T) {
	s, _ := newAgentServer(t, 1024)
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 1)
	_, err = conn.Read(buf)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection was kept %v (read: %v), want it closed after the 1 s header deadline", time.Since(start), err)
	}
	if held := time.Since(start); held < 900*time.Millisecond {
		t.Fatalf("a silent connection was closed after %v, before the header deadline", held)
	}
}

// TestRefusalsLogBounded: requests without the token cannot flood the
// log (the status page shows the log's newest warnings, which a flood
// would push out): at most webpage.MaxRefusalLogs lines at once, then one
// per webpage.RefusalLogEvery, the next one counting those left out.
func TestRefusalsLogBounded(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.Open(agent.Options{Dir: filepath.Join(t.TempDir(), "agent"), Edge: "edge-01", Trust: bundle.NewTrust(pub), MaxBundleBytes: 1024}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	logs := &enginetest.LogBuffer{}
	s, err := Listen("127.0.0.1:0", "tok", a, 1024, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	start := time.Now()
	for range 300 {
		resp, err := http.Get("http://" + s.Addr() + StatusPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status without the token: %d", resp.StatusCode)
		}
	}
	most := webpage.MaxRefusalLogs + int(time.Since(start)/webpage.RefusalLogEvery) + 1
	n := strings.Count(logs.String(), "request without a valid token")
	if n == 0 || n > most {
		t.Fatalf("300 refused requests logged %d lines, want 1 to %d", n, most)
	}
}
