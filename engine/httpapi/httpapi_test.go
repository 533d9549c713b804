package httpapi

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBearer(t *testing.T) {
	var refused atomic.Int32
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, map[string]string{"ok": "yes"}) })
	s, err := Listen("127.0.0.1:0", Bearer("s3cret", "test", "no entry", func(*http.Request) { refused.Add(1) }, ok), Options{Name: "test api"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(time.Second)
	for _, c := range []struct {
		auth string
		code int
	}{{"", 401}, {"Bearer wrong", 401}, {"bearer s3cret", 401}, {"s3cret", 401}, {"Bearer s3cret", 200}} {
		req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/x", strings.NewReader("body"))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%q: %d, want %d", c.auth, resp.StatusCode, c.code)
		}
		if c.code == 401 {
			if !resp.Close || resp.Header.Get("WWW-Authenticate") != `Bearer realm="test"` || !strings.Contains(string(body), `"no entry"`) {
				t.Errorf("%q: close %v, headers %v, body %s", c.auth, resp.Close, resp.Header, body)
			}
			if strings.Contains(string(body), "s3cret") {
				t.Errorf("the token is in the answer: %s", body)
			}
		}
	}
	if n := refused.Load(); n != 4 {
		t.Errorf("%d refusals reported, want 4", n)
	}
}

func TestListenWarnsOffLoopback(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Listen("0.0.0.0:0", http.NotFoundHandler(), Options{Name: "test api", RemoteWarning: "reachable from other hosts", Log: log})
	if err != nil {
		t.Skip(err)
	}
	_ = s.Close(time.Second)
	if !strings.Contains(logs.String(), "reachable from other hosts") {
		t.Errorf("no warning: %s", logs.String())
	}
	logs.Reset()
	s, err = Listen("127.0.0.1:0", http.NotFoundHandler(), Options{Name: "test api", RemoteWarning: "reachable from other hosts", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close(time.Second)
	if logs.Len() != 0 {
		t.Errorf("a warning on loopback: %s", logs.String())
	}
	if _, err := Listen("127.0.0.1:notaport", http.NotFoundHandler(), Options{Name: "test api"}); err == nil || !strings.HasPrefix(err.Error(), "test api: ") {
		t.Errorf("bad address: %v", err)
	}
}

func TestHasBearer(t *testing.T) {
	tests := []struct {
		name, header string
		want         bool
	}{
		{"the bearer", "Bearer s3cret", true},
		{"no header", "", false},
		{"wrong token", "Bearer s3creT", false},
		{"token without the scheme", "s3cret", false},
		{"token with a suffix", "Bearer s3cret2", false},
		{"other scheme", "Basic s3cret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if got := HasBearer(r, "s3cret"); got != tt.want {
				t.Errorf("HasBearer(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}
