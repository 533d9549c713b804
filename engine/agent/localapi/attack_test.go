package localapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

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
