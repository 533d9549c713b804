package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/bundle/bundletest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// fakeRunner records the release it runs; checkErr and switchErr make the
// next Check or Switch fail.
type fakeRunner struct {
	mu        sync.Mutex
	running   string // directory of the running release
	version   uint64
	switches  int
	checkErr  error
	switchErr error
	panics    bool
	// entered, when set, receives once Switch has begun; Switch then
	// waits for release.
	entered, release chan struct{}
}

func (r *fakeRunner) Check(dir string, m *bundle.Manifest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range m.Files {
		if _, err := os.Stat(filepath.Join(dir, f.Path)); err != nil {
			return fmt.Errorf("check: %w", err)
		}
	}
	return r.checkErr
}

func (r *fakeRunner) Switch(_ context.Context, dir string, m *bundle.Manifest) (string, error) {
	if r.entered != nil {
		r.entered <- struct{}{}
		<-r.release
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.switchErr != nil {
		return "", r.switchErr
	}
	if r.panics {
		panic("boom")
	}
	r.running, r.version = dir, m.Version
	r.switches++
	return fmt.Sprintf("pipeline p: started (v%d)", m.Version), nil
}

func (r *fakeRunner) Pipelines() []PipelineState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == "" {
		return nil
	}
	return []PipelineState{{Name: "p", State: "running"}}
}

func (r *fakeRunner) runs() (string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, r.version
}

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// release files of version v.
func releaseFiles(v uint64) map[string]string {
	return map[string]string{
		"pipelines/p.yaml": fmt.Sprintf("sources:\n  s: {type: sim, rows: %d}\n", v),
		"ml/model.bin":     strings.Repeat("w", int(v)),
	}
}

// buildFile builds a signed bundle of files into dir and returns its path.
func buildFile(t testing.TB, dir string, key ed25519.PrivateKey, name string, v uint64, targets *bundle.Targets, files map[string]string) string {
	t.Helper()
	src := bundletest.WriteTree(t, t.TempDir(), files)
	var buf bytes.Buffer
	if _, err := bundle.Build(&buf, src, bundle.BuildOptions{Name: name, Version: v, Targets: targets, Key: key}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-v%d-%d.bundle", name, v, time.Now().UnixNano()))
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

type ent struct {
	name string
	data []byte
}

// craft writes a bundle of raw entries, for bundles the builder refuses to
// make.
func craft(t testing.TB, dir string, ents ...ent) string {
	t.Helper()
	raw := make([]bundletest.Entry, 0, len(ents))
	for _, e := range ents {
		raw = append(raw, bundletest.Regular(e.name, e.data))
	}
	name := filepath.Join(dir, fmt.Sprintf("crafted-%d.bundle", time.Now().UnixNano()))
	if err := os.WriteFile(name, bundletest.Pack(t, raw...), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// manifestJSON is a manifest of one file with the digest of digestOf.
func manifestJSON(name string, v uint64, path, digestOf string, size int) []byte {
	sum := sha256.Sum256([]byte(digestOf))
	m := bundle.Manifest{Format: 1, Name: name, Version: v, Created: "2026-01-01T00:00:00Z",
		Files: []bundle.File{{Path: path, Size: int64(size), SHA256: hex.EncodeToString(sum[:])}}}
	data, _ := json.Marshal(m)
	return data
}

func sigJSON(m []byte, key ed25519.PrivateKey) []byte {
	data, _ := json.Marshal(bundle.Sign(m, key))
	return data
}

type testEnv struct {
	dir    string // state directory
	files  string // bundle files
	key    ed25519.PrivateKey
	runner *fakeRunner
	agent  *Agent
}

func newEnv(t *testing.T, mod func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{dir: filepath.Join(t.TempDir(), "agent"), files: t.TempDir(), key: testKey(1), runner: &fakeRunner{}}
	e.open(t, mod)
	return e
}

func (e *testEnv) options() Options {
	return Options{Dir: e.dir, Edge: "edge-01", Labels: map[string]string{"site": "north"},
		Trust: bundle.NewTrust(pubOf(e.key)), DiskReserve: 1}
}

func (e *testEnv) open(t *testing.T, mod func(*Options)) {
	t.Helper()
	opts := e.options()
	if mod != nil {
		mod(&opts)
	}
	a, err := Open(opts, e.runner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.agent = a
}

func (e *testEnv) apply(t *testing.T, file string) Report {
	t.Helper()
	r, err := e.agent.Apply(file)
	if err != nil {
		t.Fatalf("apply %s: %v", file, err)
	}
	return r
}

// checkState asserts that exactly version v of name runs and is recorded
// (0: none), that the state directory holds no staging leftovers and no
// release that never ran, and that the last report is last.
func checkState(t *testing.T, dir string, r *fakeRunner, name string, v uint64) {
	t.Helper()
	cur, err := ReadCurrent(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v == 0 {
		if cur != nil {
			t.Fatalf("current.json names %s v%d, want none", cur.Name, cur.Version)
		}
	} else {
		if cur == nil || cur.Name != name || cur.Version != v {
			t.Fatalf("current.json = %+v, want %s v%d", cur, name, v)
		}
		if _, rv := r.runs(); rv != v {
			t.Fatalf("the runner runs v%d, want v%d", rv, v)
		}
		checkComplete(t, filepath.Join(dir, cur.Dir))
	}
	for _, sub := range []string{stagingDir, incomingDir} {
		if entries, _ := os.ReadDir(filepath.Join(dir, sub)); len(entries) > 0 {
			t.Errorf("%s/ holds %v", sub, entries)
		}
	}
	vs, _ := os.ReadDir(filepath.Join(dir, releasesDir, name))
	for _, e := range vs {
		if e.Name() > fmt.Sprint(v) && len(e.Name()) >= len(fmt.Sprint(v)) {
			t.Errorf("releases/%s/%s never ran but is kept", name, e.Name())
		}
	}
}

// checkComplete asserts that every file of a release's manifest is there
// with its digest.
func checkComplete(t *testing.T, rel string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(rel, manifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		got, err := os.ReadFile(filepath.Join(rel, f.Path))
		if err != nil {
			t.Fatalf("release %s: %v", rel, err)
		}
		sum := sha256.Sum256(got)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Fatalf("release %s: %s differs from its manifest", rel, f.Path)
		}
	}
}

func lastReport(t *testing.T, dir string) Report {
	t.Helper()
	rs, err := ReadReports(dir, DefaultMaxReportBytes)
	if err != nil || len(rs) == 0 {
		t.Fatalf("reports: %v %v", rs, err)
	}
	return rs[len(rs)-1]
}

func TestApplyRejects(t *testing.T) {
	other := testKey(9)
	cases := []struct {
		name     string
		setup    func(e *testEnv) string // returns the bundle file
		reason   string
		location string
	}{
		{"wrong key", func(e *testEnv) string {
			return buildFile(t, e.files, other, "w", 3, nil, releaseFiles(3))
		}, "untrusted key", "MANIFEST.sig"},
		{"unsigned", func(e *testEnv) string {
			return craft(t, e.files, ent{"MANIFEST.json", manifestJSON("w", 3, "config/a", "a", 1)}, ent{"config/a", []byte("a")})
		}, "not signed", "MANIFEST.sig"},
		{"tampered", func(e *testEnv) string {
			m := manifestJSON("w", 3, "config/a", "a", 1)
			return craft(t, e.files, ent{"MANIFEST.json", m}, ent{"MANIFEST.sig", sigJSON(m, e.key)}, ent{"config/a", []byte("b")})
		}, "sha256 mismatch", "config/a"},
		{"signature over other bytes", func(e *testEnv) string {
			m := manifestJSON("w", 3, "config/a", "a", 1)
			return craft(t, e.files, ent{"MANIFEST.json", m}, ent{"MANIFEST.sig", sigJSON(append(m, ' '), e.key)}, ent{"config/a", []byte("a")})
		}, "bad signature", "MANIFEST.sig"},
		{"traversal", func(e *testEnv) string {
			m := manifestJSON("w", 3, "../config/a", "a", 1)
			return craft(t, e.files, ent{"MANIFEST.json", m}, ent{"MANIFEST.sig", sigJSON(m, e.key)}, ent{"../config/a", []byte("a")})
		}, "path not allowed", "../config/a"},
		{"older version", func(e *testEnv) string {
			return buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1))
		}, "not newer than the applied version: w v2 is applied", ""},
		{"equal version", func(e *testEnv) string {
			return buildFile(t, e.files, e.key, "w", 2, nil, releaseFiles(2))
		}, "not newer", ""},
		{"other edge", func(e *testEnv) string {
			return buildFile(t, e.files, e.key, "w", 3, &bundle.Targets{Edges: []string{"edge-02"}}, releaseFiles(3))
		}, `the bundle is for edges edge-02, this is "edge-01"`, ""},
		{"other label", func(e *testEnv) string {
			return buildFile(t, e.files, e.key, "w", 3, &bundle.Targets{Labels: map[string]string{"site": "south"}}, releaseFiles(3))
		}, "needs label site=south, this edge has site=north", ""},
		{"missing label", func(e *testEnv) string {
			return buildFile(t, e.files, e.key, "w", 3, &bundle.Targets{Labels: map[string]string{"rack": "1"}}, releaseFiles(3))
		}, "this edge has none", ""},
		{"dry run fails", func(e *testEnv) string {
			e.runner.checkErr = spec.Errors{spec.Errorf(spec.Pos{File: "pipelines/p.yaml", Line: 2, Col: 7}, "unknown field \"rowz\"")}
			return buildFile(t, e.files, e.key, "w", 3, nil, releaseFiles(3))
		}, `unknown field "rowz"`, "pipelines/p.yaml:2:7"},
		{"switch fails", func(e *testEnv) string {
			e.runner.switchErr = errors.New("sink o: connection refused")
			return buildFile(t, e.files, e.key, "w", 3, nil, releaseFiles(3))
		}, "connection refused", ""},
		{"switch panics", func(e *testEnv) string {
			e.runner.panics = true
			return buildFile(t, e.files, e.key, "w", 3, nil, releaseFiles(3))
		}, "the engine failed on the release: panic: boom", ""},
		{"too large", func(e *testEnv) string {
			e.agent.opts.MaxBundleBytes = 64
			return buildFile(t, e.files, e.key, "w", 3, nil, releaseFiles(3))
		}, "more than max_bundle_bytes (64)", ""},
		{"no space", func(e *testEnv) string {
			e.agent.opts.DiskReserve = 1 << 62
			return buildFile(t, e.files, e.key, "w", 3, nil, releaseFiles(3))
		}, "not enough free space", ""},
		{"not a bundle", func(e *testEnv) string {
			name := filepath.Join(e.files, "junk.bundle")
			os.WriteFile(name, []byte("not zstd at all"), 0o644)
			return name
		}, "malformed bundle", "MANIFEST.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if r := e.apply(t, buildFile(t, e.files, e.key, "w", 2, nil, releaseFiles(2))); r.Outcome != Applied {
				t.Fatalf("v2: %+v", r)
			}
			file := c.setup(e)
			r := e.apply(t, file)
			if r.Outcome != Rejected || !strings.Contains(r.Reason, c.reason) || r.Location != c.location {
				t.Fatalf("report %+v, want rejected with %q at %q", r, c.reason, c.location)
			}
			if !strings.HasPrefix(r.String(), "rejected ") {
				t.Errorf("report text %q", r.String())
			}
			if last := lastReport(t, e.dir); last.Outcome != Rejected || last.Reason != r.Reason || last.Location != r.Location {
				t.Errorf("reports.jsonl ends with %+v, want %+v", last, r)
			}
			e.runner.checkErr, e.runner.switchErr, e.runner.panics = nil, nil, false
			checkState(t, e.dir, e.runner, "w", 2)
			if e.runner.switches != 1 {
				t.Errorf("%d switches, want 1", e.runner.switches)
			}
			if _, err := os.Stat(filepath.Join(e.dir, releasesDir, "w", "3")); err == nil {
				t.Error("a rejected release was left installed")
			}
		})
	}
}

func TestApplyInOrderAndPrune(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.KeepReleases = 3 })
	for v := uint64(1); v <= 5; v++ {
		r := e.apply(t, buildFile(t, e.files, e.key, "w", v, &bundle.Targets{Edges: []string{"edge-01"}, Labels: map[string]string{"site": "north"}}, releaseFiles(v)))
		if r.Outcome != Applied || r.String() != fmt.Sprintf("applied w v%d", v) || !strings.Contains(r.Steps, "started") {
			t.Fatalf("v%d: %+v", v, r)
		}
		checkState(t, e.dir, e.runner, "w", v)
	}
	vs, _ := os.ReadDir(filepath.Join(e.dir, releasesDir, "w"))
	var names []string
	for _, v := range vs {
		names = append(names, v.Name())
	}
	if !slices.Equal(names, []string{"3", "4", "5"}) {
		t.Errorf("releases kept: %v, want 3 4 5", names)
	}
	// Another release line starts at its own versions; w's watermark stays.
	r := e.apply(t, buildFile(t, e.files, e.key, "other", 1, nil, releaseFiles(1)))
	if r.Outcome != Applied {
		t.Fatalf("other v1: %+v", r)
	}
	cur, _ := ReadCurrent(e.dir)
	if cur.Versions["w"] != 5 || cur.Versions["other"] != 1 {
		t.Errorf("versions %v", cur.Versions)
	}
	if r := e.apply(t, buildFile(t, e.files, e.key, "w", 4, nil, releaseFiles(4))); r.Outcome != Rejected {
		t.Errorf("w v4 after w v5: %+v", r)
	}
	rs, _ := ReadReports(e.dir, DefaultMaxReportBytes)
	if len(rs) != 7 {
		t.Errorf("%d reports, want 7", len(rs))
	}
	st := e.agent.Status()
	if !st.Engine || st.Current.Name != "other" || len(st.Pipelines) != 1 || st.Last.Outcome != Rejected {
		t.Errorf("status %+v", st)
	}
}

func TestStartRecovers(t *testing.T) {
	e := newEnv(t, nil)
	e.apply(t, buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1)))
	e.agent.Close()

	// What a crash leaves: a staging directory, a half-received upload, a
	// release installed that never ran, a temporary current.json, and
	// current.json ahead of the reports.
	os.MkdirAll(filepath.Join(e.dir, stagingDir, ".bundle-staging-1", "pipelines"), 0o700)
	os.WriteFile(filepath.Join(e.dir, incomingDir, "import-1.bundle"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(e.dir, "."+currentFile+".tmp-1"), []byte("{"), 0o600)
	os.MkdirAll(filepath.Join(e.dir, releasesDir, "w", "7"), 0o700)
	os.WriteFile(filepath.Join(e.dir, releasesDir, "w", "7", "x"), []byte("x"), 0o600)
	if err := os.Remove(filepath.Join(e.dir, reportsFile)); err != nil {
		t.Fatal(err)
	}

	e.runner = &fakeRunner{}
	e.open(t, nil)
	checkState(t, e.dir, e.runner, "w", 1)
	if _, err := os.Stat(filepath.Join(e.dir, releasesDir, "w", "7")); err == nil {
		t.Error("a release that never ran is kept")
	}
	if m, _ := filepath.Glob(filepath.Join(e.dir, ".current.json.tmp-*")); len(m) > 0 {
		t.Errorf("temporary files kept: %v", m)
	}
	r := lastReport(t, e.dir)
	if r.Outcome != Applied || r.Bundle != "w" || r.Version != 1 || r.Steps != "recorded after a restart" {
		t.Errorf("recovered report %+v", r)
	}
	// A second start does not report again.
	e.agent.Close()
	e.runner = &fakeRunner{}
	e.open(t, nil)
	if rs, _ := ReadReports(e.dir, DefaultMaxReportBytes); len(rs) != 1 {
		t.Errorf("%d reports after a second start, want 1", len(rs))
	}
}

func TestStagePendingAppliedAtStart(t *testing.T) {
	files := t.TempDir()
	key := testKey(1)
	dir := filepath.Join(t.TempDir(), "agent")
	opts := Options{Dir: dir, Edge: "edge-01", Trust: bundle.NewTrust(pubOf(key)), DiskReserve: 1}
	a, err := Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		v       uint64
		key     ed25519.PrivateKey
		outcome string
	}{{1, key, Pending}, {2, key, Pending}, {2, key, Rejected}, {1, key, Rejected}, {3, testKey(5), Rejected}} {
		r, err := a.Stage(buildFile(t, files, c.key, "w", c.v, nil, releaseFiles(c.v)))
		if err != nil || r.Outcome != c.outcome {
			t.Fatalf("stage v%d: %+v %v, want %s", c.v, r, err, c.outcome)
		}
	}
	st, err := ReadStatus(dir, "edge-01")
	if err != nil || len(st.Pending) != 2 || st.Current != nil || st.Last.Outcome != Rejected {
		t.Fatalf("status %+v %v", st, err)
	}
	if _, err := Open(opts, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("second open: %v, want ErrLocked", err)
	}
	a.Close()

	r := &fakeRunner{}
	a, err = Open(opts, r)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if started, err := a.Start(context.Background()); started || err != nil {
		t.Fatalf("start: %v %v", started, err)
	}
	reps, err := a.ApplyPending()
	if err != nil || len(reps) != 2 || reps[0].String() != "applied w v1" || reps[1].String() != "applied w v2" {
		t.Fatalf("pending: %+v %v", reps, err)
	}
	checkState(t, dir, r, "w", 2)
	if p, _ := a.pendingFiles(); len(p) != 0 {
		t.Errorf("pending left: %v", p)
	}
}

func TestImportBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBundleBytes = 1 << 10 })
	r, err := e.agent.Import(bytes.NewReader(make([]byte, 2<<10)), "big.bundle")
	if err != nil || r.Outcome != Rejected || !strings.Contains(r.Reason, "max_bundle_bytes") || r.File != "big.bundle" {
		t.Fatalf("%+v %v", r, err)
	}
	data, _ := os.ReadFile(buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1)))
	if r, err := e.agent.Import(bytes.NewReader(data), "/media/usb/w-v1.bundle\n"); err != nil || r.Outcome != Applied || r.File != "w-v1.bundle" {
		t.Fatalf("%+v %v", r, err)
	}
	checkState(t, e.dir, e.runner, "w", 1)
}

func TestReportRotation(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxReportBytes = 512 })
	junk := filepath.Join(e.files, "junk.bundle")
	os.WriteFile(junk, []byte("junk"), 0o644)
	for range 20 {
		e.apply(t, junk)
	}
	for _, n := range []string{reportsFile, reportsFile + ".1"} {
		st, err := os.Stat(filepath.Join(e.dir, n))
		if err != nil || st.Size() > 1024 {
			t.Errorf("%s: %v %v", n, st, err)
		}
	}
}

func TestConcurrentAppliesSerialize(t *testing.T) {
	e := newEnv(t, nil)
	var files []string
	for v := uint64(1); v <= 6; v++ {
		files = append(files, buildFile(t, e.files, e.key, "w", v, nil, releaseFiles(v)))
	}
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Go(func() { e.apply(t, f) })
	}
	wg.Wait()
	// Whatever the order, the highest version runs and every apply was
	// reported once.
	checkState(t, e.dir, e.runner, "w", 6)
	if rs, _ := ReadReports(e.dir, DefaultMaxReportBytes); len(rs) != 6 {
		t.Errorf("%d reports, want 6", len(rs))
	}
}

func TestTargets(t *testing.T) {
	labels := map[string]string{"site": "north", "rack": "2"}
	for _, c := range []struct {
		t  *bundle.Targets
		ok bool
	}{
		{nil, true},
		{&bundle.Targets{}, true},
		{&bundle.Targets{Edges: []string{"a", "edge-01"}}, true},
		{&bundle.Targets{Edges: []string{"a"}}, false},
		{&bundle.Targets{Labels: map[string]string{"site": "north"}}, true},
		{&bundle.Targets{Labels: map[string]string{"site": "north", "rack": "3"}}, false},
		{&bundle.Targets{Edges: []string{"edge-01"}, Labels: map[string]string{"zone": "x"}}, false},
	} {
		if err := CheckTargets(c.t, "edge-01", labels); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want ok=%v", c.t, err, c.ok)
		}
	}
}

// Status answers while an apply is switching (which may take as long as
// draining the pipelines).
func TestStatusDuringApply(t *testing.T) {
	e := newEnv(t, nil)
	e.apply(t, buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1)))
	e.runner.entered, e.runner.release = make(chan struct{}), make(chan struct{})
	done := make(chan Report)
	go func() {
		r, _ := e.agent.Apply(buildFile(t, e.files, e.key, "w", 2, nil, releaseFiles(2)))
		done <- r
	}()
	<-e.runner.entered
	st := e.agent.Status() // would deadlock if it waited for the apply
	if st.Current.Version != 1 || st.Last.String() != "applied w v1" {
		t.Errorf("status during the apply: %+v", st)
	}
	close(e.runner.release)
	if r := <-done; r.String() != "applied w v2" {
		t.Fatalf("%+v", r)
	}
	if st := e.agent.Status(); st.Current.Version != 2 {
		t.Errorf("status after the apply: %+v", st)
	}
}

// current.json is read as hostile input: it names a release directory under
// releases/ and nothing else.
func TestReadCurrentRefuses(t *testing.T) {
	for _, data := range []string{
		`{"name":"../../etc","version":1,"dir":"../etc/1"}`,
		`{"name":"w","version":1,"dir":"/etc"}`,
		`{"name":"w","version":0,"dir":"releases/w/0"}`,
		`{"name":"w","version":1,"dir":"releases/w/1"`,
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, currentFile), []byte(data), 0o644)
		if c, err := ReadCurrent(dir); err == nil {
			t.Errorf("%s: read as %+v", data, c)
		}
	}
}

// TestStatusLastReport: the status's last report is the last line of
// reports.jsonl, after an apply, after a rejection, and after a restart.
func TestStatusLastReport(t *testing.T) {
	e := newEnv(t, nil)
	if st := e.agent.Status(); st.Last != nil {
		t.Fatalf("last %+v before any report", st.Last)
	}
	checkLast := func(want string) {
		t.Helper()
		rs, err := ReadReports(e.dir, DefaultMaxReportBytes)
		if err != nil || len(rs) == 0 {
			t.Fatalf("reports %v: %v", rs, err)
		}
		got, _ := json.Marshal(e.agent.Status().Last)
		file, _ := json.Marshal(rs[len(rs)-1])
		if string(got) != string(file) || rs[len(rs)-1].Outcome != want {
			t.Errorf("status last %s, reports.jsonl ends with %s (want %s)", got, file, want)
		}
	}
	e.apply(t, buildFile(t, e.files, e.key, "w", 2, nil, releaseFiles(2)))
	checkLast(Applied)
	e.apply(t, buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1)))
	checkLast(Rejected)
	e.agent.Close()
	e.open(t, nil)
	checkLast(Rejected)
}
