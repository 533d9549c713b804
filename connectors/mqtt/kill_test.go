package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
)

// The kill test runs the source in a child process whose "sink" appends
// each row's seq to a file and fsyncs it before releasing the batch's Ack:
// a durable sink in a few lines. The parent kills the child with SIGKILL
// mid-stream, restarts it with the same client id, and checks that every
// published message reached the file: messages not acknowledged before
// the kill are delivered again to the persistent session.

const childEnv = "SLUICE_MQTT_KILL_CHILD"

// TestKillChild is the child process; it does nothing in a normal run.
func TestKillChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only as the child of TestKillRedelivery")
	}
	env := func(k string) string { return os.Getenv("SLUICE_MQTT_" + k) }
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, err := os.OpenFile(env("FILE"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// End a line the previous process may have torn.
	if _, err := f.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	src := buildSource(t, seqSource(env("URL"), env("VERSION"), env("CLIENT"), env("TOPIC"), ""),
		engine.BuildContext{Batch: engine.BatchPolicy{Size: 20, Linger: 2 * time.Millisecond}, Log: log})
	var mu sync.Mutex // onReady runs on the connection's goroutine
	out := bufio.NewWriter(os.Stdout)
	durable := 0
	src.onReady = func() {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, "ready")
		out.Flush()
	}
	var line []byte
	emit := func(rec arrow.RecordBatch, ack *engine.Ack) error {
		seq := rec.Column(1).(*array.Int64)
		line = line[:0]
		for i := range seq.Len() {
			// "seq,seq": a line torn by the kill does not read as a seq.
			line = strconv.AppendInt(line, seq.Value(i), 10)
			line = append(line, ',')
			line = strconv.AppendInt(line, seq.Value(i), 10)
			line = append(line, '\n')
		}
		n := seq.Len()
		rec.Release()
		if _, err := f.Write(line); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		ack.Done()
		mu.Lock()
		defer mu.Unlock()
		durable += n
		fmt.Fprintln(out, "durable", durable)
		return out.Flush()
	}
	if err := src.Run(context.Background(), emit); err != nil {
		t.Fatal(err)
	}
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	lines chan string
}

func startChild(t *testing.T, env []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, childEnv+"=1")...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { c.kill() })
	c.await(t, func(l string) bool { return l == "ready" })
	return c
}

// await reads the child's output until done accepts a line.
func (c *child) await(t *testing.T, done func(string) bool) {
	t.Helper()
	deadline := time.After(waitFor)
	last := ""
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("the child exited: %v", c.cmd.Wait())
			}
			if !strings.HasPrefix(l, "durable") && l != "ready" {
				t.Logf("child: %s", l)
			}
			last = l
			if done(l) {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for the child (last line %q)", last)
		}
	}
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

func durableCount(l string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(l, "durable "))
	return n
}

// readSeqs returns how often each seq is in the file, skipping a line
// torn by a kill.
func readSeqs(t *testing.T, path string) map[int]int {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, l := range bytes.Split(data, []byte("\n")) {
		a, b, ok := strings.Cut(string(l), ",")
		if !ok || a != b {
			continue
		}
		n, err := strconv.Atoi(a)
		if err != nil {
			t.Fatalf("bad line %q", l)
		}
		out[n]++
	}
	return out
}

func TestKillRedelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	const total = 600
	for _, b := range brokers(t) {
		for _, version := range []string{"5", "3.1.1"} {
			t.Run(b.name+"/v"+version, func(t *testing.T) {
				sfx := suffix()
				topic, id := "kill/"+sfx, "src-"+sfx
				t.Cleanup(func() { forgetSession(t, b.url, id) })
				path := t.TempDir() + "/durable.txt"
				env := []string{"SLUICE_MQTT_URL=" + b.url, "SLUICE_MQTT_VERSION=" + version,
					"SLUICE_MQTT_CLIENT=" + id, "SLUICE_MQTT_TOPIC=" + topic, "SLUICE_MQTT_FILE=" + path}

				first := startChild(t, env)
				pub := newPublisher(t, b.url, 5)
				published := make(chan error, 1)
				go func() {
					for i := range total {
						if err := pub.tryPublish(topic, seqPayload(i)); err != nil {
							published <- err
							return
						}
					}
					published <- nil
				}()
				first.await(t, func(l string) bool { return durableCount(l) >= total/3 })
				first.kill()
				killedAt := len(readSeqs(t, path))

				second := startChild(t, env)
				if err := <-published; err != nil {
					t.Fatal(err)
				}
				// The backlog may all be durable before the child reports
				// that it has subscribed.
				if len(readSeqs(t, path)) < total {
					second.await(t, func(string) bool { return len(readSeqs(t, path)) == total })
				}
				second.kill()
				got := readSeqs(t, path)
				lost, dups := 0, 0
				for i := range total {
					switch n := got[i]; {
					case n == 0:
						lost++
					case n > 1:
						dups += n - 1
					}
				}
				t.Logf("killed after %d durable rows; %d rows written twice; %d lost", killedAt, dups, lost)
				if lost != 0 {
					t.Errorf("%d messages lost", lost)
				}
			})
		}
	}
}
