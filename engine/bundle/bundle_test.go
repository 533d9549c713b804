package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sluice-edge/sluice/engine/bundle/bundletest"
)

// testKey is a fixed key, so that seeds and failures reproduce.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

var created = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// sampleFiles is a small release with every kind of content.
var sampleFiles = map[string]string{
	"pipelines/turbines.yaml": "sources:\n  s: {type: sim}\n",
	"pipelines/other.yml":     "a: 1\n---\nb: 2\n",
	"rules/alerts.yaml":       "rules: []\n",
	"models/line/v1/m.bin":    "\x00\x01\x02binary",
	"ml/model.onnx":           strings.Repeat("onnx", 1000),
	"config/edge.json":        "{}",
	"config/empty":            "",
}

func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	return bundletest.WriteTree(t, t.TempDir(), files)
}

func buildBundle(t testing.TB, files map[string]string, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Build(&buf, writeTree(t, files), BuildOptions{Name: "windfarm", Version: 3, Parent: 2, Created: created, Key: key}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ent is one raw tar entry of a crafted bundle.
type ent = bundletest.Entry

func file(name, data string) ent { return bundletest.Regular(name, []byte(data)) }

// manifestOf makes a manifest listing the given content entries as they are.
func manifestOf(ents ...ent) *Manifest {
	m := &Manifest{Format: 1, Name: "windfarm", Version: 3, Created: "2025-03-01T12:00:00Z"}
	for _, e := range ents {
		sum := sha256.Sum256(e.Data)
		m.Files = append(m.Files, File{Path: e.Hdr.Name, Size: e.Hdr.Size, SHA256: hex.EncodeToString(sum[:])})
	}
	return m
}

func mjson(m *Manifest) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// head returns the manifest and signature entries of m signed by key.
func head(m []byte, key ed25519.PrivateKey) []ent {
	s, _ := json.Marshal(Sign(m, key))
	return []ent{file(ManifestName, string(m)), file(SignatureName, string(s))}
}

func compress(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	return buf.Bytes()
}

// bomb is a tar stream whose one header declares size bytes of zeros,
// compressed: a few kilobytes that decompress to size bytes.
func bomb(t testing.TB, prefix []ent, name string, size int64, trailing int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	tw := tar.NewWriter(zw)
	for _, e := range prefix {
		h := e.Hdr
		tw.WriteHeader(&h)
		tw.Write(e.Data)
	}
	zeros := make([]byte, 1<<20)
	if name != "" {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644})
		for n := size; n > 0; n -= int64(len(zeros)) {
			tw.Write(zeros[:min(n, int64(len(zeros)))])
		}
	}
	tw.Close()
	for n := trailing; n > 0; n -= int64(len(zeros)) {
		zw.Write(zeros[:min(n, int64(len(zeros)))])
	}
	zw.Close()
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	key := testKey(1)
	data := buildBundle(t, sampleFiles, key)
	trust := NewTrust(pub(key))

	b, err := Verify(bytes.NewReader(data), trust)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	if m.Name != "windfarm" || m.Version != 3 || m.Parent != 2 || m.Created != "2025-03-01T12:00:00Z" || len(m.Files) != len(sampleFiles) {
		t.Fatalf("manifest %+v", m)
	}
	if b.Status != SigValid || b.KeyID() != KeyID(pub(key)) {
		t.Fatalf("status %v key %s", b.Status, b.KeyID())
	}
	for i := 1; i < len(m.Files); i++ {
		if m.Files[i-1].Path >= m.Files[i].Path {
			t.Fatalf("files not sorted: %v", m.Files)
		}
	}

	// The same inputs give the same bytes.
	if again := buildBundle(t, sampleFiles, key); !bytes.Equal(again, data) {
		t.Error("building twice gave different bundles")
	}

	parent := t.TempDir()
	b, staged, err := Unpack(bytes.NewReader(data), trust, parent)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Version != 3 || filepath.Dir(staged) != parent {
		t.Fatalf("staged %s in %s", staged, parent)
	}
	if st, err := os.Stat(staged); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging dir: %v %v", st.Mode(), err)
	}
	n := 0
	filepath.WalkDir(staged, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(staged, p)
		got, _ := os.ReadFile(p)
		if want, ok := sampleFiles[filepath.ToSlash(rel)]; !ok || string(got) != want {
			t.Errorf("unpacked %s = %q", rel, got)
		}
		n++
		return nil
	})
	if n != len(sampleFiles) {
		t.Errorf("unpacked %d files, want %d", n, len(sampleFiles))
	}

	if b, err := Inspect(bytes.NewReader(data), nil); err != nil || b.Status != SigUntrusted {
		t.Errorf("inspect without trust: %v %v", b.Status, err)
	}
}

// hostile is one bundle that must be refused, and why.
type hostile struct {
	name string
	data func(t testing.TB) []byte
	want error
}

func hostileCases() []hostile {
	key, other := testKey(1), testKey(2)
	a := file("models/a.bin", "aaaa")
	b := file("pipelines/b.yaml", "b: 1\n")
	valid := func(ents ...ent) []byte { return mjson(manifestOf(ents...)) }
	signedWith := func(m []byte, ents ...ent) func(t testing.TB) []byte {
		return func(t testing.TB) []byte { return bundletest.Pack(t, append(head(m, key), ents...)...) }
	}
	typed := func(flag byte, link string) ent {
		return ent{Hdr: tar.Header{Typeflag: flag, Name: "models/a.bin", Linkname: link, Mode: 0o644}}
	}
	var many Manifest = *manifestOf(a)
	many.Files = nil
	for i := range MaxFiles + 1 {
		many.Files = append(many.Files, File{Path: fmt.Sprintf("models/%05d", i), SHA256: strings.Repeat("0", 64)})
	}
	huge := manifestOf(a)
	huge.Files[0].Size = MaxFileSize + 1
	// Model files under ml/ are bounded and checked like every file.
	m := file("ml/model.onnx", "onnx")
	hugeModel := manifestOf(m)
	hugeModel.Files[0].Size = MaxFileSize + 1
	mlLink := ent{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "ml/model.onnx", Linkname: "/etc/passwd", Mode: 0o644}}
	dup := manifestOf(a, a)
	badPath := func(p string) func(t testing.TB) []byte {
		e := file(p, "x")
		return signedWith(valid(e), e)
	}
	return []hostile{
		{"tampered content byte", signedWith(valid(a, b), file("models/a.bin", "aaab"), b), ErrDigest},
		{"tampered manifest", func(t testing.TB) []byte {
			m := valid(a)
			h := head(m, key)
			h[0] = file(ManifestName, strings.Replace(string(m), `"version":3`, `"version":4`, 1))
			return bundletest.Pack(t, append(h, a)...)
		}, ErrSignature},
		{"wrong key under a trusted id", func(t testing.TB) []byte {
			m := valid(a)
			sig := Sign(m, other)
			sig.KeyID = KeyID(pub(key))
			s, _ := json.Marshal(sig)
			return bundletest.Pack(t, file(ManifestName, string(m)), file(SignatureName, string(s)), a)
		}, ErrSignature},
		{"untrusted key", func(t testing.TB) []byte { return bundletest.Pack(t, append(head(valid(a), other), a)...) }, ErrUntrustedKey},
		{"signature not JSON", func(t testing.TB) []byte {
			return bundletest.Pack(t, file(ManifestName, string(valid(a))), file(SignatureName, "nope"), a)
		}, ErrSignature},
		{"unsigned", func(t testing.TB) []byte { return bundletest.Pack(t, file(ManifestName, string(valid(a))), a) }, ErrUnsigned},
		{"signature first", func(t testing.TB) []byte {
			h := head(valid(a), key)
			return bundletest.Pack(t, h[1], h[0], a)
		}, ErrFormat},
		{"entry order mismatch", signedWith(valid(a, b), b, a), ErrFormat},
		{"extra entry", signedWith(valid(a), a, b), ErrFormat},
		{"missing entry", signedWith(valid(a, b), a), ErrFormat},
		{"traversal ../x", badPath("../x"), ErrPath},
		{"absolute /etc/x", badPath("/etc/x"), ErrPath},
		{"traversal models/../../x", badPath("models/../../x"), ErrPath},
		{"unlisted traversal entry", signedWith(valid(a), file("../models/a.bin", "aaaa")), ErrPath},
		{"backslash", badPath(`models\..\x`), ErrPath},
		{"outside the known dirs", badPath("bin/sh"), ErrPath},
		{"pipeline not yaml", badPath("pipelines/x.json"), ErrPath},
		{"too deep", badPath("models/1/2/3/4/5/6/7/8"), ErrPath},
		{"too long", badPath("models/" + strings.Repeat("x", 250)), ErrPath},
		{"symlink entry", signedWith(valid(a), typed(tar.TypeSymlink, "/etc/passwd")), ErrPath},
		{"hardlink entry", signedWith(valid(a), typed(tar.TypeLink, "/etc/passwd")), ErrPath},
		{"directory entry", signedWith(valid(a), typed(tar.TypeDir, "")), ErrPath},
		{"device entry", signedWith(valid(a), typed(tar.TypeChar, "")), ErrPath},
		{"fifo entry", signedWith(valid(a), typed(tar.TypeFifo, "")), ErrPath},
		{"duplicate path in the manifest", signedWith(mjson(dup), a, a), ErrFormat},
		{"duplicate entry", signedWith(valid(a, b), a, a, b), ErrFormat},
		{"file also a directory", func(t testing.TB) []byte {
			c := file("models/a.bin/c", "c")
			return signedWith(valid(a, c), a, c)(t)
		}, ErrPath},
		{"oversized entry in the manifest", signedWith(mjson(huge), a), ErrTooLarge},
		{"traversal ml/../../x.onnx", badPath("ml/../../x.onnx"), ErrPath},
		{"model too deep", badPath("ml/1/2/3/4/5/6/7/m.onnx"), ErrPath},
		{"model symlink entry", signedWith(valid(m), mlLink), ErrPath},
		{"oversized model in the manifest", signedWith(mjson(hugeModel), m), ErrTooLarge},
		{"tampered model byte", signedWith(valid(m), file("ml/model.onnx", "onnX")), ErrDigest},
		{"zstd bomb model declared small", func(t testing.TB) []byte {
			return bomb(t, head(valid(m), key), "ml/model.onnx", 1<<30, 0)
		}, ErrTooLarge},
		{"too many entries", signedWith(mjson(&many), a), ErrTooLarge},
		{"manifest with an unknown field", signedWith([]byte(strings.Replace(string(valid(a)), `"format":1`, `"format":1,"x":1`, 1)), a), ErrFormat},
		{"manifest with a duplicate key", signedWith([]byte(strings.Replace(string(valid(a)), `"version":3`, `"version":3,"version":9`, 1)), a), ErrFormat},
		{"zstd bomb entry declared small", func(t testing.TB) []byte {
			return bomb(t, head(valid(a), key), "models/a.bin", 1<<30, 0)
		}, ErrTooLarge},
		{"zstd bomb manifest", func(t testing.TB) []byte { return bomb(t, nil, ManifestName, 1<<30, 0) }, ErrTooLarge},
		{"zstd bomb after the archive", func(t testing.TB) []byte { return bomb(t, append(head(valid(a), key), a), "", 0, 1<<30) }, ErrTooLarge},
		{"data after the archive", func(t testing.TB) []byte {
			var raw bytes.Buffer
			tw := tar.NewWriter(&raw)
			for _, e := range append(head(valid(a), key), a) {
				h := e.Hdr
				tw.WriteHeader(&h)
				tw.Write(e.Data)
			}
			tw.Close()
			raw.WriteString("garbage")
			return compress(t, raw.Bytes())
		}, ErrFormat},
		{"truncated", func(t testing.TB) []byte {
			d := signedWith(valid(a, b), a, b)(t)
			return d[:len(d)-20]
		}, ErrFormat},
		{"empty file", func(testing.TB) []byte { return nil }, ErrFormat},
		{"not zstd", func(testing.TB) []byte { return []byte("PK\x03\x04 a zip file") }, ErrFormat},
		{"plain tar", func(t testing.TB) []byte {
			var raw bytes.Buffer
			tw := tar.NewWriter(&raw)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: ManifestName})
			tw.Close()
			return raw.Bytes()
		}, ErrFormat},
	}
}

// checkEmpty fails when dir holds anything, and lists what it holds.
func checkEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

func TestHostileBundles(t *testing.T) {
	trust := NewTrust(pub(testKey(1)))
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			data := c.data(t)
			if _, err := Verify(bytes.NewReader(data), trust); !errors.Is(err, c.want) {
				t.Fatalf("verify: %v, want %v", err, c.want)
			}
			// Unpack two levels down, so that an escape by .. lands in a
			// directory the test watches.
			base := t.TempDir()
			parent := filepath.Join(base, "p", "q")
			if err := os.MkdirAll(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			_, staged, err := Unpack(bytes.NewReader(data), trust, parent)
			if !errors.Is(err, c.want) || staged != "" {
				t.Fatalf("unpack: %q, %v, want %v", staged, err, c.want)
			}
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Errorf("error %v is not an EntryError", err)
			}
			t.Log(err)
			checkEmpty(t, parent)
			for _, d := range []string{base, filepath.Join(base, "p")} {
				if ents, _ := os.ReadDir(d); len(ents) != 1 {
					t.Errorf("%s holds %d entries, want 1", d, len(ents))
				}
			}
			if _, err := os.Stat("/etc/x"); err == nil {
				t.Error("/etc/x exists")
			}
		})
	}
}

func TestTruncatedAnywhere(t *testing.T) {
	key := testKey(1)
	data := buildBundle(t, sampleFiles, key)
	trust := NewTrust(pub(key))
	for n := 0; n < len(data); n += max(1, len(data)/97) {
		if _, err := Verify(bytes.NewReader(data[:n]), trust); err == nil {
			t.Fatalf("a bundle cut to %d of %d bytes verified", n, len(data))
		}
	}
}

func TestInspectStatus(t *testing.T) {
	key, other := testKey(1), testKey(2)
	a := file("models/a.bin", "aaaa")
	m := mjson(manifestOf(a))
	bad := head(m, other)
	sig := Sign(m, other)
	sig.KeyID = KeyID(pub(key))
	s, _ := json.Marshal(sig)
	bad[1] = file(SignatureName, string(s))
	trust := NewTrust(pub(key))
	for _, c := range []struct {
		name string
		data []byte
		want SigStatus
	}{
		{"valid", bundletest.Pack(t, append(head(m, key), a)...), SigValid},
		{"untrusted", bundletest.Pack(t, append(head(m, other), a)...), SigUntrusted},
		{"bad", bundletest.Pack(t, append(bad, a)...), SigBad},
		{"unsigned", bundletest.Pack(t, file(ManifestName, string(m)), a), SigUnsigned},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Inspect(bytes.NewReader(c.data), trust)
			if err != nil {
				t.Fatalf("contents: %v", err)
			}
			if b.Status != c.want || b.Manifest == nil || len(b.Manifest.Files) != 1 {
				t.Fatalf("status %v (%v), want %v", b.Status, b.SigErr, c.want)
			}
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	key := testKey(1)
	for _, c := range []struct {
		name  string
		files map[string]string
		link  string
		want  error
	}{
		{"outside the known dirs", map[string]string{"README.md": "x"}, "", ErrPath},
		{"pipeline not yaml by name", map[string]string{"pipelines/p.json": "{}"}, "", ErrPath},
		{"pipeline not yaml by content", map[string]string{"pipelines/p.yaml": "a: [1, 2"}, "", ErrFormat},
		{"rule not yaml by content", map[string]string{"rules/r.yml": "\tx: :"}, "", ErrFormat},
		{"symlink", map[string]string{"models/a": "x"}, "models/link", ErrPath},
		{"empty", map[string]string{}, "", ErrFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTree(t, c.files)
			if c.link != "" {
				if err := os.Symlink("/etc/passwd", filepath.Join(dir, c.link)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Build(io.Discard, dir, BuildOptions{Name: "n", Version: 1, Key: key})
			if !errors.Is(err, c.want) {
				t.Fatalf("build: %v, want %v", err, c.want)
			}
		})
	}
	dir := writeTree(t, map[string]string{"models/a": "x"})
	for _, o := range []BuildOptions{
		{Name: "Bad Name", Version: 1, Key: key},
		{Name: "n", Version: 0, Key: key},
		{Name: "n", Version: 2, Parent: 2, Key: key},
		{Name: "n", Version: 1},
	} {
		if _, err := Build(io.Discard, dir, o); err == nil {
			t.Errorf("build with %+v succeeded", o)
		}
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	p, k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kf, pf := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	if err := WritePrivateKey(kf, k); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKey(pf, p); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivateKey(kf, k); err == nil {
		t.Error("a key file was overwritten")
	}
	if st, _ := os.Stat(kf); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode())
	}
	if k2, err := ReadPrivateKey(kf); err != nil || !k2.Equal(k) {
		t.Fatalf("read private: %v", err)
	}
	if p2, err := ReadPublicKey(pf); err != nil || !p2.Equal(p) {
		t.Fatalf("read public: %v", err)
	}
	os.Chmod(kf, 0o640)
	if _, err := ReadPrivateKey(kf); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a group-readable private key was read: %v", err)
	}
	if _, err := ReadPublicKey(kf); err == nil {
		t.Error("a private key read as a public key")
	}
	for _, name := range []string{pf, dir} {
		tr, err := LoadTrust(name)
		if err != nil || len(tr.KeyIDs()) != 1 || tr.KeyIDs()[0] != KeyID(p) {
			t.Errorf("trust %s: %v %v", name, tr.KeyIDs(), err)
		}
	}
	if len(KeyID(p)) != 16 {
		t.Errorf("key id %q", KeyID(p))
	}
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o644)
	if _, err := LoadTrust(dir); err == nil {
		t.Error("a trust store with a junk key loaded")
	}
	if _, err := LoadTrust(t.TempDir()); err == nil {
		t.Error("an empty trust store loaded")
	}
}

func TestStrictJSON(t *testing.T) {
	ok := string(mjson(manifestOf(file("models/a", "a"))))
	if _, err := ParseManifest([]byte(ok)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		strings.Replace(ok, `"files":[{`, `"files":[{"path":"x",`, 1),
		strings.Replace(ok, `{"format":1`, `{"format":1,"targets":{"labels":{"a":"1","a":"2"}}`, 1),
		ok + "{}",
		strings.Replace(ok, `"version":3`, `"version":"3"`, 1),
		strings.Replace(ok, `"created":"2025-03-01T12:00:00Z"`, `"created":"2025-03-01T12:00:00+01:00"`, 1),
		strings.Replace(ok, `"format":1`, `"format":2`, 1),
		`{"format":1}`,
		`[`,
		``,
	} {
		if _, err := ParseManifest([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
