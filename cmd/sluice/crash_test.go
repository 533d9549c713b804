package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// crashChildEnv makes the test binary run sluice with the given arguments
// and kill itself (SIGKILL) when an apply reaches the given step.
const crashChildEnv = "SLUICE_TEST_CRASH_CHILD"

type crashChild struct {
	Args []string
	Step string
}

func TestMain(m *testing.M) {
	if v := os.Getenv(crashChildEnv); v != "" {
		var c crashChild
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			os.Exit(3)
		}
		applyHook = func(step string) {
			if step == c.Step {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
		os.Exit(execute(c.Args, io.Discard, os.Stderr))
	}
	os.Exit(m.Run())
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		return os.WriteFile(to, data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrashDuringApply kills the engine (SIGKILL) at each step of applying
// v2 over a running v1 and starts it again: exactly one complete release
// runs afterwards — v1 (every pipeline of v1, none of v2) when the crash
// came before v2 was recorded as applied, v2 (every pipeline of v2)
// after — and the reports never claim an apply that did not happen.
func TestCrashDuringApply(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	e := newEdgeSetup(t)
	v1 := e.bundle(t, 1, simPipeline("turbines"))
	v2files := simPipelineRate("turbines", 60)
	for k, v := range simPipeline("pumps") {
		v2files[k] = v
	}
	v2 := e.bundle(t, 2, v2files)
	stop := e.start(t)
	if code, out, stderr := run(t, "import", v1, "--config", e.config); code != 0 {
		t.Fatalf("import v1: %d %s%s", code, out, stderr)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: %d\n%s", code, stderr)
	}
	base := filepath.Join(t.TempDir(), "base")
	copyTree(t, e.data, base)

	want := map[string]uint64{
		agent.StepVerified: 1, agent.StepUnpacked: 1, agent.StepInstalled: 1, agent.StepChecked: 1,
		agent.StepSwitched: 1, agent.StepCurrentTemp: 1,
		agent.StepPersisted: 2, agent.StepReported: 2, agent.StepPruned: 2,
	}
	pipes := map[uint64][]string{1: {"turbines"}, 2: {"pumps", "turbines"}}
	for _, step := range []string{agent.StepVerified, agent.StepUnpacked, agent.StepInstalled, agent.StepChecked,
		agent.StepSwitched, agent.StepCurrentTemp, agent.StepPersisted, agent.StepReported, agent.StepPruned} {
		t.Run(step, func(t *testing.T) {
			if err := os.RemoveAll(e.data); err != nil {
				t.Fatal(err)
			}
			copyTree(t, base, e.data)
			arg, _ := json.Marshal(crashChild{Args: []string{"run", "--config", e.config}, Step: step})
			child := exec.Command(os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), crashChildEnv+"="+string(arg))
			var stderr enginetest.LogBuffer
			child.Stderr = &stderr
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- child.Wait() }()
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, out, _ := run(t, "status", "--data-dir", e.data, "--json")
				var st agent.Status
				if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Engine {
					break
				}
				if time.Now().After(deadline) {
					_ = child.Process.Kill()
					t.Fatalf("the engine did not come up\n%s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The import dies with the engine.
			code, _, _ := run(t, "import", v2, "--config", e.config)
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("the engine ended with %v, not SIGKILL at %s (import exit %d)\n%s", err, step, code, stderr.String())
				}
			case <-time.After(30 * time.Second):
				_ = child.Process.Kill()
				t.Fatalf("the engine did not die at step %s\n%s", step, stderr.String())
			}

			stop := e.start(t)
			st := e.status(t)
			if st.Current == nil || st.Current.Version != want[step] {
				t.Fatalf("after a crash at %s: release %+v runs, want v%d", step, st.Current, want[step])
			}
			var names []string
			for _, p := range st.Pipelines {
				if p.State != "running" {
					t.Errorf("after a crash at %s: pipeline %s is %s", step, p.Name, p.State)
				}
				names = append(names, p.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, pipes[want[step]]) {
				t.Fatalf("after a crash at %s: pipelines %v run, v%d has %v", step, names, want[step], pipes[want[step]])
			}
			if code, stderr := stop(); code != 0 {
				t.Fatalf("stop: %d\n%s", code, stderr)
			}
			rs, err := agent.ReadReports(filepath.Join(e.data, "agent"), agent.DefaultMaxReportBytes)
			if err != nil {
				t.Fatal(err)
			}
			applied2 := 0
			for _, r := range rs {
				if r.Outcome == agent.Applied && r.Version == 2 {
					applied2++
				}
			}
			if want[step] == 2 && applied2 != 1 || want[step] == 1 && applied2 != 0 {
				t.Fatalf("after a crash at %s: %d reports of v2 applied (v%d runs)", step, applied2, want[step])
			}
		})
	}
}
