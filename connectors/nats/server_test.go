package nats_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/connectors/nats"
)

// TestStartServer starts an embedded server with a token on a free port:
// a client without the token is refused, one with it gets JetStream, and
// Close removes the temporary store.
func TestStartServer(t *testing.T) {
	const token = "s3cret-demo-token"
	s, err := nats.StartServer(nats.ServerOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.HasSuffix(s.Addr(), ":4222") || !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") {
		t.Fatalf("listens on %s (%s), want a free port of 127.0.0.1", s.Addr(), s.URL())
	}
	if strings.Contains(s.URL(), token) {
		t.Fatalf("URL %s carries the token", s.URL())
	}
	if nc, err := natsgo.Connect(s.URL(), natsgo.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a client without the token was admitted")
	} else if !errors.Is(err, natsgo.ErrAuthorization) {
		t.Fatalf("without the token: %v, want an authorization error", err)
	}
	nc, err := natsgo.Connect(s.URL(), natsgo.Token(token), natsgo.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if info, err := js.AccountInfo(ctx); err != nil || info.Store == 0 {
		t.Fatalf("account info %+v, %v: want a stored message", info, err)
	}
	store := s.StoreDir()
	if _, err := os.Stat(store); err != nil {
		t.Fatalf("store directory: %v", err)
	}
	nc.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary store %s is still there after Close: %v", store, err)
	}
}

// TestStartServerStoreDir keeps a given store directory: a server started
// again on it finds the stream.
func TestStartServerStoreDir(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 2 {
		s, err := nats.StartServer(nats.ServerOptions{Listen: "127.0.0.1:0", StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := natsgo.Connect(s.URL(), natsgo.MaxReconnects(0))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		if i == 0 {
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"k"}})
		} else {
			_, err = js.Stream(ctx, "KEPT")
		}
		nc.Close()
		_ = s.Close()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the given store directory was removed: %v", err)
	}
}

// TestStartServerBadListen refuses an address without a valid port.
func TestStartServerBadListen(t *testing.T) {
	for _, listen := range []string{"127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000"} {
		if s, err := nats.StartServer(nats.ServerOptions{Listen: listen}); err == nil {
			s.Close()
			t.Errorf("listen %q: started", listen)
		}
	}
}
