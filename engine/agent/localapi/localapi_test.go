package localapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-edge/sluice/engine/agent"
)

// fakeService applies a body "ok" and rejects anything else; it counts
// imports running at once.
type fakeService struct {
	running, most atomic.Int32
	release       chan struct{}
}

func (f *fakeService) Import(r io.Reader, file string) (agent.Report, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.most.Load()
		if n <= m || f.most.CompareAndSwap(m, n) {
			break
		}
	}
	if f.release != nil {
		<-f.release
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return agent.Report{}, err
	}
	if string(data) == "ok" {
		return agent.Report{Bundle: "w", Version: 2, Outcome: agent.Applied, File: file}, nil
	}
	if string(data) == "fail" {
		return agent.Report{}, errors.New("disk failed")
	}
	return agent.Report{Bundle: "w", Version: 2, Outcome: agent.Rejected, Reason: "bad signature"}, nil
}

func (f *fakeService) RejectTooLarge(file string, size int64) (agent.Report, error) {
	return agent.Report{Outcome: agent.Rejected, File: file, Reason: fmt.Sprintf("too large: %d bytes", size)}, nil
}

func (f *fakeService) Status() agent.Status {
	return agent.Status{Edge: "edge-01", Engine: true, Current: &agent.Current{Name: "w", Version: 1}}
}

func TestLocalAPI(t *testing.T) {
	svc := &fakeService{}
	s, err := Listen("127.0.0.1:0", "secret-token", svc, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	c := NewClient(s.Addr(), "secret-token")

	st, err := c.Status(ctx)
	if err != nil || st.Edge != "edge-01" || st.Current.Version != 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	r, err := c.Import(ctx, strings.NewReader("ok"), 2, "dir/w v2\x01.bundle")
	if err != nil || r.String() != "applied w v2" || r.File != "w v2.bundle" {
		t.Fatalf("import ok: %+v %v", r, err)
	}
	r, err = c.Import(ctx, strings.NewReader("bad"), 3, "")
	if err != nil || r.String() != "rejected w v2: bad signature" {
		t.Fatalf("import bad: %+v %v", r, err)
	}
	if _, err := c.Import(ctx, strings.NewReader("fail"), 4, ""); err == nil || !strings.Contains(err.Error(), "disk failed") {
		t.Errorf("import fail: %v", err)
	}
	if r, err := c.Import(ctx, bytes.NewReader(make([]byte, 17)), 17, "big"); err != nil || r.String() != "rejected bundle big: too large: 17 bytes" {
		t.Errorf("too large: %+v %v", r, err)
	}
	if err := NewClient(s.Addr(), "wrong").Ping(ctx); err == nil || !strings.Contains(err.Error(), "does not know the token") {
		t.Errorf("wrong token: %v", err)
	}
	for _, req := range []struct{ method, path, auth string }{
		{"GET", StatusPath, ""},
		{"GET", StatusPath, "Bearer secret-token2"},
		{"GET", StatusPath, "secret-token"},
		{"POST", ImportPath, "Basic secret-token"},
	} {
		hr, _ := http.NewRequest(req.method, "http://"+s.Addr()+req.path, nil)
		if req.auth != "" {
			hr.Header.Set("Authorization", req.auth)
		}
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%+v: %d, want 401", req, resp.StatusCode)
		}
	}
	hr, _ := http.NewRequest("DELETE", "http://"+s.Addr()+StatusPath, nil)
	hr.Header.Set("Authorization", "Bearer secret-token")
	if resp, err := http.DefaultClient.Do(hr); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %v %v", resp, err)
	}
	s.Close()
	if err := c.Ping(ctx); !errors.Is(err, ErrUnreachable) {
		t.Errorf("closed server: %v, want ErrUnreachable", err)
	}
}

func TestOneImportAtATime(t *testing.T) {
	svc := &fakeService{release: make(chan struct{})}
	s, err := Listen("127.0.0.1:0", "tok", svc, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewClient(s.Addr(), "tok")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := c.Import(context.Background(), strings.NewReader("ok"), 2, ""); err != nil {
				t.Error(err)
			}
		})
	}
	for range 4 {
		svc.release <- struct{}{}
	}
	wg.Wait()
	c.Close()
	if m := svc.most.Load(); m != 1 {
		t.Errorf("%d imports ran at once, want 1", m)
	}
}
