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
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/spec"
)

// encoderWindow is the zstd window the builder uses; readers accept up to
// maxWindow.
const encoderWindow = 4 << 20

// BuildOptions are the manifest values and the key of a bundle to build.
type BuildOptions struct {
	Name    string
	Version uint64
	Parent  uint64
	Targets *Targets
	// Created is the creation time (default: now), kept to the second.
	Created time.Time
	// Key signs the manifest.
	Key ed25519.PrivateKey
}

// Build writes a signed bundle of the files under dir to w. Every file
// under dir is shipped: a path the format refuses, a file that is not
// regular (a symbolic link, a device) or a pipeline or rule file that is
// not YAML fails the build, naming the file.
func Build(w io.Writer, dir string, opts BuildOptions) (*Manifest, error) {
	if len(opts.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("build: no valid signing key")
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)
	files, err := scan(dir)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Format:  FormatVersion,
		Name:    opts.Name,
		Version: opts.Version,
		Created: created.Format(time.RFC3339),
		Parent:  opts.Parent,
		Targets: opts.Targets,
		Files:   files,
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	mbytes, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if len(mbytes) > MaxManifestSize {
		return nil, fmt.Errorf("build: %w", entryErr(ManifestName, ErrTooLarge, "%d bytes, at most %d", len(mbytes), MaxManifestSize))
	}
	sbytes, err := json.Marshal(Sign(mbytes, opts.Key))
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	zw, err := zstd.NewWriter(w, zstd.WithWindowSize(encoderWindow))
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	tw := tar.NewWriter(zw)
	put := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: created}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("build: %s: %w", name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("build: %s: %w", name, err)
		}
		return nil
	}
	if err := put(ManifestName, int64(len(mbytes)), bytes.NewReader(mbytes)); err != nil {
		zw.Close()
		return nil, err
	}
	if err := put(SignatureName, int64(len(sbytes)), bytes.NewReader(sbytes)); err != nil {
		zw.Close()
		return nil, err
	}
	for _, f := range files {
		if err := copyChecked(put, dir, f); err != nil {
			zw.Close()
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		zw.Close()
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return m, nil
}

// copyChecked writes one file into the archive, checking that it still
// has the size and digest recorded in the manifest.
func copyChecked(put func(string, int64, io.Reader) error, dir string, f File) error {
	fh, err := openRegular(filepath.Join(dir, filepath.FromSlash(f.Path)))
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer fh.Close()
	h := sha256.New()
	if err := put(f.Path, f.Size, io.TeeReader(io.LimitReader(fh, f.Size), h)); err != nil {
		return err
	}
	var one [1]byte
	if n, _ := fh.Read(one[:]); n != 0 || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("build: %s changed while the bundle was built", f.Path)
	}
	return nil
}

// openRegular opens a regular file without following a symbolic link.
func openRegular(name string) (*os.File, error) {
	f, _, err := spec.OpenRegular(name, spec.NoFollow)
	return f, err
}

// scan lists, checks and hashes the files under dir, sorted by path.
func scan(dir string) ([]File, error) {
	var files []File
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			if !d.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return entryErr(rel, ErrPath, "not a regular file (%s)", d.Type())
		}
		if err := CheckPath(rel); err != nil {
			return err
		}
		if len(files) >= MaxFiles {
			return entryErr(rel, ErrTooLarge, "more than %d files", MaxFiles)
		}
		f, err := hashFile(p, rel)
		if err != nil {
			return err
		}
		total += f.Size
		if total > MaxTotalSize {
			return entryErr(rel, ErrTooLarge, "files exceed %d bytes together", MaxTotalSize)
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// hashFile hashes one file, bounded by MaxFileSize, and checks that a
// pipeline or rule file parses as YAML.
func hashFile(name, rel string) (File, error) {
	fh, err := openRegular(name)
	if err != nil {
		return File{}, entryErr(rel, ErrPath, "%v", err)
	}
	defer fh.Close()
	h := sha256.New()
	var buf *bytes.Buffer
	var dst io.Writer = h
	if mustBeYAML(rel) {
		buf = &bytes.Buffer{}
		dst = io.MultiWriter(h, buf)
	}
	n, err := io.Copy(dst, io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", rel, err)
	}
	if n > MaxFileSize {
		return File{}, entryErr(rel, ErrTooLarge, "larger than %d bytes", MaxFileSize)
	}
	if buf != nil {
		if err := checkYAML(buf.Bytes()); err != nil {
			return File{}, entryErr(rel, ErrFormat, "not valid YAML: %v", err)
		}
	}
	return File{Path: rel, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// checkYAML parses every document of a YAML stream.
func checkYAML(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var v yaml.Node
		err := dec.Decode(&v)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
