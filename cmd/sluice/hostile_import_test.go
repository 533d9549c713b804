package main

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/bundle/bundletest"
)

// The release a hostile edge runs: a sim source writing JSON lines to a
// file of the test (so that production shows as the file growing), a
// thing model and a rule set an alert step includes.
const (
	hostileModels = "models:\n  - id: turbine\n    points:\n      power: {type: float64, min: 0, max: 3000}\n      wind_speed: {type: float64, min: 0, max: 60}\n" +
		"assets:\n  - {id: T0001, model: turbine}\n  - {id: T0002, model: turbine}\n"
	hostileRules    = "model: turbine\nrules:\n  - name: gale\n    expr: wind_speed > 55\n"
	hostilePipeline = "sources:\n  s: {type: sim, turbines: 2, rate: 50, rows: 0, resume: false}\n" +
		"steps:\n  alerts: {type: alert, input: s, include: [turbine]}\n" +
		"sinks:\n  o: {type: file, input: s, path: %q, append: true}\n  a: {type: discard, input: alerts}\n"
)

func hostileRelease(out string) map[string]string {
	return map[string]string{
		"models/turbine.yaml":    hostileModels,
		"rules/turbine.yaml":     hostileRules,
		"pipelines/turbine.yaml": fmt.Sprintf(hostilePipeline, out),
	}
}

// unpackEntries reads the raw entries of a bundle, without any check.
func unpackEntries(t *testing.T, data []byte) []bundletest.Entry {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []bundletest.Entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bundletest.Entry{Hdr: *h, Data: b})
	}
}

// signedHead returns the manifest and signature entries of m signed by key.
func signedHead(t *testing.T, m *bundle.Manifest, key []byte) []bundletest.Entry {
	t.Helper()
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := json.Marshal(bundle.Sign(mb, key))
	if err != nil {
		t.Fatal(err)
	}
	return []bundletest.Entry{bundletest.Regular(bundle.ManifestName, mb), bundletest.Regular(bundle.SignatureName, sig)}
}

func listed(p string, data []byte) bundle.File {
	sum := sha256.Sum256(data)
	return bundle.File{Path: p, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// buildBytes builds a bundle of files with the bundle package's API.
func buildBytes(t *testing.T, files map[string]string, opts bundle.BuildOptions) []byte {
	t.Helper()
	src := bundletest.WriteTree(t, t.TempDir(), files)
	var buf bytes.Buffer
	if _, err := bundle.Build(&buf, src, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitGrows waits until the file at p is larger than it is now.
func waitGrows(t *testing.T, p string) {
	t.Helper()
	size := func() int64 {
		st, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return st.Size()
	}
	before := size()
	deadline := time.Now().Add(20 * time.Second)
	for size() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not grow beyond %d bytes: production stopped", p, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostileBundlesLeaveOldRunning imports hostile and invalid bundles
// into a running engine: each is rejected with its reason, on the
// command line and in the reports, while the release that ran goes on
// producing; a valid release then applies.
func TestHostileBundlesLeaveOldRunning(t *testing.T) {
	e := newEdgeSetup(t)
	const maxBundle = 64 << 10
	if err := os.WriteFile(e.config, []byte(fmt.Sprintf(`
edge: edge-01
data_dir: data
trust: release.pub
labels: {site: north}
api: {listen: "127.0.0.1:0"}
max_bundle_bytes: %d
`, maxBundle)), 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := bundle.ReadPrivateKey(e.key + ".key")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "out", "rows.jsonl")
	release := hostileRelease(out)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	opts := func(v uint64) bundle.BuildOptions {
		return bundle.BuildOptions{Name: "w", Version: v, Created: created, Key: key}
	}
	with := func(change map[string]string) map[string]string {
		files := map[string]string{}
		for k, v := range release {
			files[k] = v
		}
		for k, v := range change {
			files[k] = v
		}
		return files
	}

	e.start(t)
	// The running release is v2, so that an older version exists.
	base := filepath.Join(e.dir, "base.bundle")
	if err := os.WriteFile(base, buildBytes(t, release, opts(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run(t, "import", base, "--config", e.config); code != 0 || !strings.Contains(stdout, "applied w v2") {
		t.Fatalf("import v2: exit %d\n%s%s", code, stdout, stderr)
	}
	waitGrows(t, out)

	// tampered: a content file's bytes changed after signing, same size.
	tampered := unpackEntries(t, buildBytes(t, release, opts(3)))
	for i := range tampered {
		if tampered[i].Hdr.Name == "rules/turbine.yaml" {
			tampered[i].Data = bytes.Replace(tampered[i].Data, []byte("> 55"), []byte("> 05"), 1)
		}
	}
	// unsigned: MANIFEST.sig dropped.
	var unsigned []bundletest.Entry
	for _, en := range unpackEntries(t, buildBytes(t, release, opts(3))) {
		if en.Hdr.Name != bundle.SignatureName {
			unsigned = append(unsigned, en)
		}
	}
	// A manifest signed by the trusted key listing a path out of the
	// release.
	evil := []byte("pwned\n")
	traversal := &bundle.Manifest{Format: bundle.FormatVersion, Name: "w", Version: 3, Created: "2026-01-02T03:04:05Z", Files: []bundle.File{listed("../x", evil)}}
	// An entry declared 16 bytes by the signed manifest whose tar header
	// says more than max_bundle_bytes (zeros: the file itself is small).
	small := []byte("0123456789abcdef")
	oversized := &bundle.Manifest{Format: bundle.FormatVersion, Name: "w", Version: 3, Created: "2026-01-02T03:04:05Z", Files: []bundle.File{listed("config/big.bin", small)}}
	bigEntry := bundletest.Regular("config/big.bin", small)
	bigEntry.Hdr.Size = 4 * maxBundle
	// A valid bundle whose file exceeds max_bundle_bytes.
	noise := make([]byte, 2*maxBundle)
	rand.Read(noise)

	tests := []struct {
		name string
		data []byte
		want string // in stderr and in the report's reason
	}{
		{"tampered content", bundletest.Pack(t, tampered...), `entry "rules/turbine.yaml": sha256 mismatch`},
		{"untrusted key", buildBytes(t, release, bundle.BuildOptions{Name: "w", Version: 3, Created: created, Key: otherKey}), "signed by an untrusted key"},
		{"unsigned", bundletest.Pack(t, unsigned...), "bundle is not signed"},
		{"older version", buildBytes(t, release, opts(1)), "not newer than the applied version: w v2 is applied"},
		{"equal version", buildBytes(t, release, opts(2)), "not newer than the applied version: w v2 is applied"},
		{"path traversal", bundletest.Pack(t, append(signedHead(t, traversal, key), bundletest.Regular("../x", evil))...), `entry "../x": path not allowed`},
		{"entry larger than declared", bundletest.Pack(t, append(signedHead(t, oversized, key), bigEntry)...), `entry "config/big.bin"`},
		{"bundle over max_bundle_bytes", buildBytes(t, with(map[string]string{"config/noise.bin": string(noise)}), opts(3)), "max_bundle_bytes"},
		{"bad expression", buildBytes(t, with(map[string]string{"pipelines/bad.yaml": "sources:\n  s: {type: sim, turbines: 1, rate: 10}\nsteps:\n  f: {type: filter, input: s, expr: power >>> 3}\nsinks:\n  o: {type: discard, input: f}\n"}), opts(3)), "pipelines/bad.yaml:4:"},
		{"rule reads a point the model lacks", buildBytes(t, with(map[string]string{"rules/turbine.yaml": hostileRules + "  - name: iced\n    expr: blade_ice > 0\n"}), opts(3)), "rules/turbine.yaml:6:11"},
		{"another edge", buildBytes(t, release, bundle.BuildOptions{Name: "w", Version: 3, Created: created, Key: key, Targets: &bundle.Targets{Edges: []string{"edge-02"}}}), "not targeted at this edge"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(e.dir, fmt.Sprintf("hostile-%02d.bundle", i))
			if err := os.WriteFile(f, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := run(t, "import", f, "--config", e.config)
			if code != exitFailed || !strings.Contains(stderr, "rejected") || !strings.Contains(stderr, tc.want) {
				t.Errorf("import: exit %d, want %d and %q\n%s%s", code, exitFailed, tc.want, stdout, stderr)
			}
			rs, err := agent.ReadReports(filepath.Join(e.data, "agent"), agent.DefaultMaxReportBytes)
			if err != nil {
				t.Fatal(err)
			}
			if last := rs[len(rs)-1]; last.Outcome != agent.Rejected || last.File != filepath.Base(f) || !strings.Contains(last.Reason, tc.want) {
				t.Errorf("last report %+v, want a rejection of %s with %q", last, filepath.Base(f), tc.want)
			}
			st := e.status(t)
			if st.Current == nil || st.Current.Version != 2 || len(st.Pipelines) != 1 {
				t.Fatalf("status after the rejection: %+v", st)
			}
			for _, p := range st.Pipelines {
				if p.State != "running" {
					t.Errorf("pipeline %s is %s after the rejection: %s", p.Name, p.State, p.Err)
				}
			}
			waitGrows(t, out)
		})
	}
	if _, err := os.Stat(filepath.Join(e.data, "agent", "x")); err == nil {
		t.Error("the path traversal wrote agent/x")
	}

	// A valid release applies and production goes on.
	v3 := filepath.Join(e.dir, "v3.bundle")
	if err := os.WriteFile(v3, buildBytes(t, with(map[string]string{"config/site.json": "{}"}), opts(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run(t, "import", v3, "--config", e.config); code != 0 || !strings.Contains(stdout, "applied w v3") {
		t.Fatalf("import v3: exit %d\n%s%s", code, stdout, stderr)
	}
	if st := e.status(t); st.Current == nil || st.Current.Version != 3 || len(st.Pipelines) != 1 || st.Pipelines[0].State != "running" {
		t.Fatalf("status after v3: %+v", st)
	}
	waitGrows(t, out)
}
