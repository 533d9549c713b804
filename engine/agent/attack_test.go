package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// printable says whether s holds no control or bidirectional formatting
// character, which would let a bundle's author rewrite an operator's
// terminal.
func printable(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return false
		}
	}
	return true
}

// The reason and the location of a rejection, printed by import and
// status, hold no terminal control sequence, whatever the entry names of
// an unsigned bundle are.
func TestHostileNamesArePrintable(t *testing.T) {
	e := newEnv(t, nil)
	for _, name := range []string{"\x1b[2J\x1b[32mapplied w v9", "\u009b2Jx", "evil\u202eeldnub.yaml", "a\u2066b"} {
		r := e.apply(t, craft(t, e.files, ent{name, []byte("x")}))
		if r.Outcome != Rejected || !printable(r.Reason) || !printable(r.Location) || !printable(r.File) {
			t.Errorf("entry %q: report %+q", name, r)
		}
	}
	rs, err := ReadReports(e.dir, DefaultMaxReportBytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !printable(r.Reason) || !printable(r.Location) {
			t.Errorf("stored report %+q", r)
		}
	}
}

func TestCleanFileNameDropsFormatting(t *testing.T) {
	for in, want := range map[string]string{
		"w\u009b31m.bundle":           "w31m.bundle",
		"evil\u202eeldnub.exe":        "evileldnub.exe",
		"a\u2066b\u2069.bundle":       "ab.bundle",
		"dir/\x1b]0;x\x07.bundle":     "]0;x.bundle",
		"température-v2.bundle":       "température-v2.bundle",
		strings.Repeat("é", 200):      strings.Repeat("é", 127),
		"../../etc/passwd":            "passwd",
		"C:\\bundles\\w\u200e.bundle": "C:\\bundles\\w.bundle",
	} {
		if got := CleanFileName(in); got != want {
			t.Errorf("CleanFileName(%+q) = %+q, want %+q", in, got, want)
		}
	}
	// Staging offline names the file as the API does.
	e := newEnv(t, nil)
	name := filepath.Join(e.files, "w\u202e\x1b[1m.bundle")
	if err := os.WriteFile(name, []byte("not a bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := e.agent.Stage(name)
	if err != nil || r.Outcome != Rejected || r.File != "w[1m.bundle" {
		t.Errorf("stage: %+q %v", r, err)
	}
}

// The highest version a manifest can hold applies, survives a restart and
// is not newer than itself.
func TestMaxVersion(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.apply(t, buildFile(t, e.files, e.key, "w", math.MaxUint64, nil, releaseFiles(1))); r.Outcome != Applied {
		t.Fatalf("apply: %+v", r)
	}
	e.agent.Close()
	e.open(t, nil)
	checkState(t, e.dir, e.runner, "w", math.MaxUint64)
	if r := e.apply(t, buildFile(t, e.files, e.key, "w", math.MaxUint64, nil, releaseFiles(2))); r.Outcome != Rejected || !strings.Contains(r.Reason, ErrVersion.Error()) {
		t.Fatalf("apply again: %+v", r)
	}
	// Another name still applies: an edge is never stuck.
	if r := e.apply(t, buildFile(t, e.files, e.key, "w2", 1, nil, releaseFiles(3))); r.Outcome != Applied {
		t.Fatalf("apply w2: %+v", r)
	}
}

// A disk that fills while a release is unpacked rejects the release; the
// old one keeps running, nothing is left behind, and the next apply once
// space is back succeeds.
func TestDiskFullDuringUnpack(t *testing.T) {
	root := enginetest.Tmpfs(t, 8<<20)
	var fill string
	e := &testEnv{dir: filepath.Join(root, "agent"), files: t.TempDir(), key: testKey(1), runner: &fakeRunner{}}
	e.open(t, nil)
	e.apply(t, buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1)))
	e.agent.opts.Hook = func(step string) {
		if step == StepVerified && fill == "" {
			fill = enginetest.Fill(t, root, 64<<10)
		}
	}
	big := releaseFiles(2)
	big["ml/big.bin"] = strings.Repeat("0123456789", 100<<10)
	r, err := e.agent.Apply(buildFile(t, e.files, e.key, "w", 2, nil, big))
	if err == nil && r.Outcome != Rejected {
		t.Fatalf("apply on a full disk: %+v", r)
	}
	if _, v := e.runner.runs(); v != 1 {
		t.Fatalf("the runner runs v%d, want v1", v)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	e.agent.opts.Hook = nil
	checkState(t, e.dir, e.runner, "w", 1)
	if r := e.apply(t, buildFile(t, e.files, e.key, "w", 2, nil, big)); r.Outcome != Applied {
		t.Fatalf("apply with space back: %+v", r)
	}
	checkState(t, e.dir, e.runner, "w", 2)
}

// A state directory or a token file another user owns is refused: who
// controls them controls what the engine runs or who may call its API.
func TestForeignOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	const other = 4242
	dir := t.TempDir()
	tok := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tok, []byte("attacker-knows-this\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tok, other, other); err != nil {
		t.Fatal(err)
	}
	if got, err := EnsureToken(tok); err == nil {
		t.Errorf("a token file of uid %d was used: %q", other, got)
	}
	link := filepath.Join(dir, "link.token")
	os.Symlink(tok, link)
	if _, err := EnsureToken(link); err == nil {
		t.Error("a symbolic link was used as the token file")
	}

	state := filepath.Join(dir, "agent")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, other, other); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{dir: state, key: testKey(1)}
	if a, err := Open(e.options(), nil); err == nil {
		a.Close()
		t.Error("a state directory of another user was opened")
	}
	if err := os.Chown(state, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	if a, err := Open(e.options(), nil); err == nil {
		a.Close()
		t.Error("a state directory every user may write was opened")
	} else if errors.Is(err, ErrLocked) {
		t.Error(err)
	}
}

// The record of a state directory another user controls is not believed:
// it names the token file import and status read and the address they send
// the token to, so its author could have them send any file of theirs.
func TestForeignRecordIgnored(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	const other = 4242
	data := t.TempDir()
	dir := filepath.Join(data, "agent")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("the operator's secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{File: filepath.Join(data, "sluice.yaml"), Edge: "edge-01", DataDir: data, Listen: "127.0.0.1:7468", TokenFile: filepath.Join(dir, "api.token")}
	rec := cfg.Record()
	rec.Listen, rec.TokenFile = "127.0.0.1:9", secret
	if err := WriteEdgeRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := ConfigFromDataDir(data); err != nil || got.TokenFile != secret {
		t.Fatalf("own record: %+v %v", got, err)
	}
	if got := BoundListen(cfg); got != "127.0.0.1:9" {
		t.Fatalf("own record: listen %s", got)
	}
	for _, p := range []string{dir, filepath.Join(dir, edgeFile)} {
		if err := os.Chown(p, other, other); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := ConfigFromDataDir(data); err == nil {
		t.Errorf("the record of uid %d was used: token file %s, listen %s", other, got.TokenFile, got.Listen)
	}
	if got := BoundListen(cfg); got != cfg.Listen {
		t.Errorf("the record of uid %d was used: listen %s", other, got)
	}
}

// A bundle whose entry name is huge (a PAX header holds up to a megabyte)
// is reported in a bounded line: the reports after it stay readable.
func TestHugeEntryNameReportBounded(t *testing.T) {
	e := newEnv(t, nil)
	name := "pipelines/" + strings.Repeat("\x1bx", 200<<10) + ".yaml"
	r := e.apply(t, craft(t, e.files, ent{name, []byte("x")}))
	if r.Outcome != Rejected || len(r.Reason) > 16<<10 || len(r.Location) > 16<<10 {
		t.Fatalf("report of %d bytes of reason, %d of location", len(r.Reason), len(r.Location))
	}
	if r := e.apply(t, buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1))); r.Outcome != Applied {
		t.Fatalf("apply: %+v", r)
	}
	rs, err := ReadReports(e.dir, DefaultMaxReportBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].Outcome != Applied {
		t.Fatalf("%d reports, the last %+v", len(rs), rs[len(rs)-1])
	}
	if st := e.agent.Status(); st.Last == nil || st.Last.Outcome != Applied {
		t.Errorf("status: last %+v", st.Last)
	}
}

// api.listen is a host and a port number: anything else would end up in
// the URL import and status send the token to.
func TestListenAddressChecked(t *testing.T) {
	for _, bad := range []string{"127.0.0.1:80/x", "127.0.0.1:99999", "127.0.0.1:http", "127.0.0.1:-1", "user@127.0.0.1:80", "127.0.0.1:80?a=b", "127.0.0.1:80#x"} {
		_, errs := ParseConfig("x.yaml", []byte("trust: k\napi: {listen: \""+bad+"\"}\n"))
		if len(errs) == 0 || !strings.Contains(errs.Error(), "api.listen") {
			t.Errorf("listen %q: %v", bad, errs)
		}
	}
	for _, good := range []string{"127.0.0.1:0", "[::1]:7468", "localhost:7468", "0.0.0.0:7468"} {
		if _, errs := ParseConfig("x.yaml", []byte("trust: k\napi: {listen: \""+good+"\"}\n")); len(errs) > 0 {
			t.Errorf("listen %q: %v", good, errs)
		}
	}
}

// A state directory that is a symbolic link is refused: who may write
// the data directory could otherwise point the agent's files (the lock,
// edge.json, the reports, the token) into any directory of the engine's
// user.
func TestStateDirSymlinkRefused(t *testing.T) {
	data := t.TempDir()
	target := t.TempDir()
	dir := filepath.Join(data, "agent")
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{dir: dir, key: testKey(1)}
	if a, err := Open(e.options(), nil); err == nil {
		a.Close()
		t.Error("a state directory that is a symbolic link was opened")
	}
	if entries, _ := os.ReadDir(target); len(entries) > 0 {
		t.Errorf("the link's target was written: %v", entries)
	}
}

// A bundle of a hundred thousand tiny files is refused without unpacking
// them: by the manifest's bound on files, or at the first entry the
// manifest does not list.
func TestManyTinyFilesRefused(t *testing.T) {
	e := newEnv(t, nil)
	m := manifestJSON("w", 1, "config/a", "a", 1)
	ents := []ent{{bundle.ManifestName, m}, {bundle.SignatureName, sigJSON(m, e.key)}, {"config/a", []byte("a")}}
	for i := range 100_000 {
		ents = append(ents, ent{fmt.Sprintf("config/f%06d", i), []byte("x")})
	}
	r := e.apply(t, craft(t, e.files, ents...))
	if r.Outcome != Rejected || !strings.Contains(r.Reason, "config/f000000") {
		t.Errorf("extra entries: %+v", r)
	}
	var files []bundle.File
	for i := range bundle.MaxFiles + 1 {
		files = append(files, bundle.File{Path: fmt.Sprintf("config/f%06d", i), SHA256: strings.Repeat("0", 64)})
	}
	big, _ := json.Marshal(bundle.Manifest{Format: 1, Name: "w", Version: 1, Created: "2026-01-01T00:00:00Z", Files: files})
	r = e.apply(t, craft(t, e.files, ent{bundle.ManifestName, big}, ent{bundle.SignatureName, sigJSON(big, e.key)}))
	if r.Outcome != Rejected || !strings.Contains(r.Reason, "at most 4096") {
		t.Errorf("4097 files: %+v", r)
	}
	checkState(t, e.dir, e.runner, "w", 0)
}

// TestStateFileFIFORefused: a named pipe in place of current.json is
// refused at once instead of blocking the agent (and sluice status) on
// an open that waits for a writer.
func TestStateFileFIFORefused(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "current.json"), 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadCurrent(dir); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("ReadCurrent of a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadCurrent blocked on a FIFO")
	}
}
