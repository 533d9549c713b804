package enginetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// NATSServer is a nats-server process with JetStream, on a free port of
// 127.0.0.1 and with its own store directory, that a test can kill
// (SIGKILL) and start again on the same port and store — an outage of the
// test's own server, never of a shared one.
type NATSServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// NewNATSServer returns a server that is not started yet; it is killed
// when the test ends. Without the nats-server binary the test is skipped,
// or fails when CI=true.
func NewNATSServer(t testing.TB) *NATSServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the test needs the nats-server binary: %v", err)
		}
		t.Skipf("the test needs the nats-server binary: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	n := &NATSServer{t: t, bin: bin, port: port, dir: t.TempDir()}
	t.Cleanup(n.Kill)
	return n
}

// URL is the server's client URL.
func (n *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Start starts the server and waits until it accepts clients.
func (n *NATSServer) Start() {
	n.t.Helper()
	n.cmd = exec.Command(n.bin, "-a", "127.0.0.1", "-p", fmt.Sprint(n.port), "-js", "-sd", n.dir)
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := natsgo.Connect(n.URL(), natsgo.Timeout(200*time.Millisecond))
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("nats-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL (nothing flushed) and waits for it.
func (n *NATSServer) Kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}
