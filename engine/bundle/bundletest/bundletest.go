// Package bundletest helps tests make release bundles: the source tree of
// a build, and tar+zstd streams of raw entries written as they are, for the
// bundles the builder refuses to make (hostile paths, links, lying sizes,
// missing signatures).
package bundletest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Entry is one raw tar entry of a crafted bundle.
type Entry struct {
	Hdr  tar.Header
	Data []byte
}

// Regular is the entry of a regular file name holding data.
func Regular(name string, data []byte) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}, Data: data}
}

// WriteTree writes files (slash-separated paths relative to dir, and
// their contents) under dir, making the directories, and returns dir.
func WriteTree(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Pack writes entries as a tar+zstd stream as they are, without any
// check: a header may declare more bytes than its data has (the rest are
// zeros).
func Pack(t testing.TB, ents ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, e := range ents {
		h := e.Hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			t.Fatal(err)
		}
		if pad := h.Size - int64(len(e.Data)); pad > 0 {
			if _, err := io.CopyN(tw, zeroReader{}, pad); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zeroReader reads zeros without end.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
