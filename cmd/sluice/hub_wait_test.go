//go:build !sluice_lean

package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// freePort returns a TCP port of 127.0.0.1 nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pgProxy forwards connections of 127.0.0.1:port to the PostgreSQL of
// dsn once started: PostgreSQL "comes up" when it starts.
type pgProxy struct {
	t      *testing.T
	port   int
	target string
	wg     sync.WaitGroup
}

func (p *pgProxy) start() {
	p.t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
	if err != nil {
		p.t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	p.t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
}

// waitHubLog waits until the hub's log holds text after its first from
// bytes, and returns where the text ends.
func waitHubLog(t *testing.T, log *enginetest.LogBuffer, done chan int, from int, text string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if i := strings.Index(log.String()[from:], text); i >= 0 {
			return from + i + len(text)
		}
		select {
		case code := <-done:
			t.Fatalf("the hub exited %d before logging %q\n%s", code, text, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not log %q\n%s", text, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHubWaitsForItsServices: `sluice hub` started while PostgreSQL and
// NATS are down waits for them with backoff, logging what it waits for
// without the URLs' passwords, and starts fully once they are up. When
// NATS comes back without JetStream the hub re-reads its resources until
// it can; cancelled then, it exits 0 like any stop, and so does a hub
// cancelled while it waits at its start.
func TestHubWaitsForItsServices(t *testing.T) {
	dsn, err := url.Parse(outboundtest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := &pgProxy{t: t, port: freePort(t), target: dsn.Host}
	dsn.Host = fmt.Sprintf("127.0.0.1:%d", proxy.port)
	dsn.User = url.UserPassword(dsn.User.Username(), "pg-pass-1234")
	schema := fmt.Sprintf("hubwait_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	db, err := sql.Open("pgx", outboundtest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
		db.Close()
	})
	n := enginetest.NewNATSServer(t)
	natsURL := strings.Replace(n.URL(), "nats://", "nats://hub:nats-pass-5678@", 1)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tokenFile := filepath.Join(t.TempDir(), "hub.token")
	var stderr *enginetest.LogBuffer
	start := func() (context.CancelFunc, chan int) {
		stderr = &enginetest.LogBuffer{}
		stderr := stderr
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() {
			done <- executeContext(ctx, []string{"hub", "--nats", natsURL, "--postgres", dsn.String(), "--schema", schema, "--listen", addr,
				"--token-file", tokenFile, "--log-format", "json"}, io.Discard, stderr)
		}()
		t.Cleanup(func() { cancel(); <-done })
		return cancel, done
	}

	// Cancelled while it waits for PostgreSQL: exit 0.
	cancel, done := start()
	waitHubLog(t, stderr, done, 0, "hub: waiting for PostgreSQL")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("cancelled while waiting for PostgreSQL: exit %d\n%s", code, stderr.String())
	}
	done <- 0 // for the cleanup
	first := stderr

	// PostgreSQL comes up, then NATS.
	cancel, done = start()
	at := waitHubLog(t, stderr, done, 0, "hub: waiting for PostgreSQL")
	waitHubLog(t, stderr, done, at, "hub: waiting for PostgreSQL") // it tries again
	proxy.start()
	waitHubLog(t, stderr, done, 0, "hub: waiting for NATS JetStream")
	if strings.Contains(stderr.String(), "hub running") {
		t.Fatalf("the hub runs without NATS\n%s", stderr.String())
	}
	n.Start()
	client := []string{"--hub", "http://" + addr, "--token-file", tokenFile}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _, _ := run(t, append([]string{"hub", "edges"}, client...)...); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub's API did not answer after NATS came up\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// NATS comes back without JetStream: the consumers stop, and the hub
	// re-reads its resources until JetStream is there; cancelled then, it
	// exits 0. NATS goes once the consumers run (a fetch of the data
	// consumer waits at the server): the API answers before them, and a
	// kill while the hub still ensured its resources for its run found no
	// consumer to stop (it only waited for JetStream again).
	nc, err := natsgo.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	outboundtest.Eventually(t, 60*time.Second, "the hub's data consumer fetching", func() bool {
		c, err := js.Consumer(context.Background(), protocol.DataStream, server.DataDurable)
		if err != nil {
			return false
		}
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumWaiting > 0
	})
	nc.Close()
	port := strings.TrimPrefix(n.URL(), "nats://127.0.0.1:")
	n.Kill()
	plain := exec.Command("nats-server", "-a", "127.0.0.1", "-p", port)
	if err := plain.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Process.Kill(); plain.Wait() })
	at = waitHubLog(t, stderr, done, 0, "hub: re-reading the hub's resources")
	waitHubLog(t, stderr, done, at, "hub: waiting for NATS JetStream")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("cancelled while re-reading its resources: exit %d\n%s", code, stderr.String())
	}
	done <- 0
	for _, secret := range []string{"pg-pass-1234", "nats-pass-5678"} {
		if strings.Contains(stderr.String()+first.String(), secret) {
			t.Errorf("the log holds a password (%s)\n%s", secret, stderr.String())
		}
	}
}
