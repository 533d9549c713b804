package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sluice-edge/sluice/engine/bundle"
)

// Environment of the crashing helper process.
const (
	crashEnvStep    = "SLUICE_AGENT_CRASH_STEP"
	crashEnvDir     = "SLUICE_AGENT_CRASH_DIR"
	crashEnvBundle  = "SLUICE_AGENT_CRASH_BUNDLE"
	crashEnvTrust   = "SLUICE_AGENT_CRASH_TRUST"
	crashEnvPending = "SLUICE_AGENT_CRASH_PENDING"
)

// TestHelperProcess is not a test: run by TestCrashAtEveryStep as a
// subprocess, it applies a bundle and SIGKILLs itself after one step.
func TestHelperProcess(t *testing.T) {
	step := os.Getenv(crashEnvStep)
	if step == "" {
		t.Skip("helper process of TestCrashAtEveryStep")
	}
	trust, err := bundle.LoadTrust(os.Getenv(crashEnvTrust))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Dir: os.Getenv(crashEnvDir), Edge: "edge-01", Trust: trust, DiskReserve: 1,
		Hook: func(s string) {
			if s == step {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}}
	a, err := Open(opts, &fakeRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(crashEnvPending) != "" {
		_, err = a.ApplyPending()
	} else {
		_, err = a.Apply(os.Getenv(crashEnvBundle))
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Exit(3) // the step never came
}

// A crash after any step of an apply leaves, after a restart, exactly one
// complete release running: the old one up to the rename of current.json,
// the new one from then on; no staging leftovers; the reports agree.
func TestCrashAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a subprocess per step")
	}
	key := testKey(1)
	keyFile := filepath.Join(t.TempDir(), "release.pub")
	if err := bundle.WritePublicKey(keyFile, pubOf(key)); err != nil {
		t.Fatal(err)
	}
	for i, step := range Steps {
		t.Run(step, func(t *testing.T) {
			files := t.TempDir()
			e := &testEnv{dir: filepath.Join(t.TempDir(), "agent"), files: files, key: key, runner: &fakeRunner{}}
			e.open(t, nil)
			e.apply(t, buildFile(t, files, key, "w", 1, nil, releaseFiles(1)))
			e.agent.Close()

			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnvStep+"="+step, crashEnvDir+"="+e.dir,
				crashEnvBundle+"="+buildFile(t, files, key, "w", 2, nil, releaseFiles(2)), crashEnvTrust+"="+keyFile)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the helper did not die at %s: %v\n%s", step, err, out)
			}

			e.runner = &fakeRunner{}
			e.open(t, nil)
			want := uint64(1)
			if i >= indexOf(StepPersisted) {
				want = 2
			}
			checkState(t, e.dir, e.runner, "w", want)
			rs, err := ReadReports(e.dir, DefaultMaxReportBytes)
			if err != nil {
				t.Fatal(err)
			}
			last := lastApplied(rs)
			if last == nil || last.Version != want {
				t.Fatalf("last applied report %+v, want v%d", last, want)
			}
			applied := 0
			for _, r := range rs {
				if r.Outcome == Applied && r.Version == 2 {
					applied++
				}
			}
			if applied != int(want-1) {
				t.Errorf("%d applied reports of v2, want %d: %+v", applied, want-1, rs)
			}
			// The edge goes on: a newer bundle applies.
			if r := e.apply(t, buildFile(t, files, key, "w", 3, nil, releaseFiles(3))); r.Outcome != Applied {
				t.Fatalf("v3 after the crash: %+v", r)
			}
			checkState(t, e.dir, e.runner, "w", 3)
		})
	}

	// A crash while applying bundles an offline import staged: after the
	// restart the staged bundle is applied once.
	for _, step := range []string{StepSwitched, StepPersisted, StepPruned} {
		t.Run("pending-"+step, func(t *testing.T) {
			files := t.TempDir()
			dir := filepath.Join(t.TempDir(), "agent")
			opts := Options{Dir: dir, Edge: "edge-01", Trust: bundle.NewTrust(pubOf(key)), DiskReserve: 1}
			a, err := Open(opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := a.Stage(buildFile(t, files, key, "w", 1, nil, releaseFiles(1))); err != nil || r.Outcome != Pending {
				t.Fatal(r, err)
			}
			a.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnvStep+"="+step, crashEnvPending+"=1", crashEnvDir+"="+dir, crashEnvTrust+"="+keyFile)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the helper did not die at %s: %v\n%s", step, err, out)
			}
			r := &fakeRunner{}
			a, err = Open(opts, r)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if _, err := a.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := a.ApplyPending(); err != nil {
				t.Fatal(err)
			}
			checkState(t, dir, r, "w", 1)
			rs, _ := ReadReports(dir, DefaultMaxReportBytes)
			if len(rs) != 1 || rs[0].String() != "applied w v1" {
				t.Errorf("reports %+v, want one applied w v1", rs)
			}
			if p, _ := a.pendingFiles(); len(p) != 0 {
				t.Errorf("pending left: %v", p)
			}
		})
	}
}

func indexOf(step string) int {
	for i, s := range Steps {
		if s == step {
			return i
		}
	}
	return -1
}
