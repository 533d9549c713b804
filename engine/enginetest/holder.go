package enginetest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"
)

// Holder is another process holding something (a lock on a directory)
// for a test, started by HoldInChild.
type Holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// HoldInChild runs the calling test again in a child process, which calls
// hold(arg) and keeps what it took until Release: a second engine on the
// same data directory. It returns once hold has succeeded in the child;
// the test fails at once when it did not. env names the environment
// variable that tells the child what to hold; it must be the test's own.
// In the child HoldInChild does not return: what the test does before
// calling it runs there too.
func HoldInChild(t testing.TB, env, arg string, hold func(arg string) error) *Holder {
	t.Helper()
	if d := os.Getenv(env); d != "" {
		if err := hold(d); err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("held\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), env+"="+arg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &Holder{cmd: cmd, stdin: stdin}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "held\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the other process: %q, %v", line, err)
	}
	t.Cleanup(func() { _ = h.Release() })
	return h
}

// Release lets the child go and waits for it to end, returning how it
// ended. Calling it again returns nil.
func (h *Holder) Release() error {
	if h.cmd == nil {
		return nil
	}
	_ = h.stdin.Close()
	err := h.cmd.Wait()
	h.cmd = nil
	return err
}
