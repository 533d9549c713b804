package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	wmhttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/connectors/webhook"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// receiver is an HTTP server that stores what it accepts; status, when
// set, chooses the answer to each request instead.
type receiver struct {
	mu      sync.Mutex
	msgs    []*message.Message
	headers []http.Header
	status  func(n int) int
	n       int
	srv     *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.status != nil {
		if code := r.status(r.n); code != http.StatusOK {
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "7")
			}
			http.Error(w, "nope", code)
			return
		}
	}
	m, err := wmhttp.DefaultUnmarshalMessageFunc(req.URL.Path, req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.msgs = append(r.msgs, m)
	r.headers = append(r.headers, req.Header.Clone())
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) reader() outboundtest.Reader {
	return func(ctx context.Context, n int) ([]*message.Message, error) {
		for {
			r.mu.Lock()
			got := append([]*message.Message(nil), r.msgs...)
			r.mu.Unlock()
			if len(got) >= n {
				return got, nil
			}
			select {
			case <-ctx.Done():
				return got, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

func build(t testing.TB, yaml string) *outbound.Publisher {
	t.Helper()
	p, err := webhook.New(outboundtest.Parse(t, webhook.Spec, yaml), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformance(t *testing.T) {
	outboundtest.Run(t, outboundtest.Case{
		Spec: webhook.Spec,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			r := newReceiver(t)
			p := build(t, fmt.Sprintf("url: %s/ingest\nencoding: %s\nheaders: {Authorization: Bearer t0k}", r.srv.URL, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, r.reader()
		},
	})
}

func TestHeaders(t *testing.T) {
	r := newReceiver(t)
	p := build(t, "url: "+r.srv.URL+"/x\nencoding: arrow\nheaders: {Authorization: Bearer t0k}")
	defer p.Close()
	entries := outboundtest.Entries(1, 2)
	defer entries[0].Rec.Release()
	msgs, _ := p.Encoder("e", "s").Encode(entries[0])
	if err := p.Publish(p.Topic, msgs...); err != nil {
		t.Fatal(err)
	}
	h := r.headers[0]
	for k, want := range map[string]string{
		"Authorization":   "Bearer t0k",
		"Content-Type":    "application/vnd.apache.arrow.stream",
		"Idempotency-Key": "e/s/1-2",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

// TestStatus checks how answers are classified, against a real server.
func TestStatus(t *testing.T) {
	cases := []struct {
		code      int
		permanent bool
	}{
		{400, true}, {401, true}, {403, true}, {404, true}, {413, true}, {422, true},
		{408, false}, {429, false}, {500, false}, {502, false}, {503, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			r := newReceiver(t)
			r.status = func(int) int { return c.code }
			p := build(t, "url: "+r.srv.URL)
			defer p.Close()
			err := p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.Code != c.code {
				t.Fatalf("err %v, want a StatusError %d", err, c.code)
			}
			if got := p.IsPermanent(err); got != c.permanent {
				t.Errorf("permanent %v, want %v", got, c.permanent)
			}
			if c.code == 429 && se.RetryAfter != 7*time.Second {
				t.Errorf("retry after %v", se.RetryAfter)
			}
		})
	}
}

// TestRetryAfter5xx: a transient failure, then success on retry.
func TestRetryAfter5xx(t *testing.T) {
	r := newReceiver(t)
	r.status = func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	p := build(t, "url: "+r.srv.URL)
	defer p.Close()
	m := message.NewMessage("e/s/1", []byte("{}"))
	if err := p.Publish(p.Topic, m); err == nil || p.IsPermanent(err) {
		t.Fatalf("first attempt: %v", err)
	}
	if err := p.Publish(p.Topic, m); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if len(r.msgs) != 1 {
		t.Fatalf("%d messages stored", len(r.msgs))
	}
}

// TestRedirect follows a redirect and fails on a bare 3xx.
func TestRedirect(t *testing.T) {
	r := newReceiver(t)
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/bare" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		http.Redirect(w, req, r.srv.URL+"/new", http.StatusPermanentRedirect)
	}))
	defer redir.Close()
	p := build(t, "url: "+redir.URL+"/old")
	defer p.Close()
	if err := p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}"))); err != nil || len(r.msgs) != 1 {
		t.Fatalf("redirected publish: %v, %d received", err, len(r.msgs))
	}
	if err := p.Publish(redir.URL+"/bare", message.NewMessage("e/s/2", []byte("{}"))); err == nil {
		t.Fatal("a 304 answer counted as delivered")
	}
}

// TestServerDown publishes to a port nobody listens on.
func TestServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := build(t, "url: http://"+addr+"/x\ntimeout: 1s")
	defer p.Close()
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
}

func TestPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"400", &webhook.StatusError{Code: 400}, true},
		{"404 wrapped", fmt.Errorf("publishing message x failed: %w", &webhook.StatusError{Code: 404}), true},
		{"408", &webhook.StatusError{Code: 408}, false},
		{"429", &webhook.StatusError{Code: 429}, false},
		{"500", &webhook.StatusError{Code: 500}, false},
		{"304", &webhook.StatusError{Code: 304}, false},
		{"network", errors.New("dial tcp: connection refused"), false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := webhook.Permanent(c.err); got != c.want {
				t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"url: ftp://x", "absolute http or https"},
		{"url: /relative", "absolute http or https"},
		{"url: http://x\ntimeout: 0s", "timeout must be above 0"},
	} {
		_, err := webhook.New(outboundtest.Parse(t, webhook.Spec, c.yaml), engine.BuildContext{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%q: err %v, want %q with a location", c.yaml, err, c.want)
		}
	}
}

// TestDoc checks the reference in docs/sinks.md against the declaration.
func TestDoc(t *testing.T) { outboundtest.CheckDoc(t, webhook.Spec, "../../docs/sinks.md") }
