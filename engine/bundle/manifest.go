// Package bundle builds, signs, verifies and unpacks release bundles: one
// tar+zstd file holding a signed manifest and the files it lists (models,
// pipelines, rules, ML files, configuration). docs/format/bundle.md is the
// contract this package implements.
package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-edge/sluice/engine/jsonstrict"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// Entry names of the manifest and its signature, the first two entries.
const (
	ManifestName  = "MANIFEST.json"
	SignatureName = "MANIFEST.sig"
)

// Limits of the format.
const (
	MaxManifestSize  = 1 << 20   // bytes of MANIFEST.json
	MaxSignatureSize = 4 << 10   // bytes of MANIFEST.sig
	MaxFileSize      = 64 << 20  // bytes of one content file
	MaxTotalSize     = 512 << 20 // bytes of all content files
	MaxFiles         = 4096      // content files
	MaxPathLen       = 255       // bytes of a content path
	MaxPathDepth     = 8         // elements of a content path
)

// Errors a bundle is rejected with. Each is wrapped with the entry it
// concerns (see EntryError), so errors.Is tells the reason.
var (
	// ErrFormat: the bundle is not a well-formed bundle (compression, tar,
	// entry order, manifest syntax or values).
	ErrFormat = errors.New("malformed bundle")
	// ErrUnsigned: the bundle has no MANIFEST.sig entry.
	ErrUnsigned = errors.New("bundle is not signed")
	// ErrSignature: the signature does not verify with the key it names.
	ErrSignature = errors.New("bad signature")
	// ErrUntrustedKey: the signature names a key the trust store lacks.
	ErrUntrustedKey = errors.New("signed by an untrusted key")
	// ErrPath: an entry's path or type is not allowed.
	ErrPath = errors.New("path not allowed")
	// ErrDigest: a file's bytes do not match the manifest's SHA-256.
	ErrDigest = errors.New("sha256 mismatch")
	// ErrTooLarge: an entry, the bundle or the decompressed stream
	// exceeds a limit.
	ErrTooLarge = errors.New("too large")
)

// EntryError is an error about one entry of a bundle.
type EntryError struct {
	Entry string // the entry's name ("" for the bundle as a whole)
	Err   error
}

// Error names the entry and the reason.
func (e *EntryError) Error() string {
	if e.Entry == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("entry %q: %v", e.Entry, e.Err)
}

// Unwrap returns the reason.
func (e *EntryError) Unwrap() error { return e.Err }

// entryErr wraps a sentinel reason with detail and the entry's name.
func entryErr(entry string, reason error, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	if detail != "" {
		reason = fmt.Errorf("%w: %s", reason, detail)
	}
	return &EntryError{Entry: entry, Err: reason}
}

// Manifest is the content of MANIFEST.json.
type Manifest struct {
	Format  int      `json:"format"`
	Name    string   `json:"name"`
	Version uint64   `json:"version"`
	Created string   `json:"created"`
	Parent  uint64   `json:"parent"`
	Targets *Targets `json:"targets,omitempty"`
	Files   []File   `json:"files"`
}

// Targets says which edges a release is meant for.
type Targets struct {
	Edges  []string          `json:"edges,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// File is one content file of a bundle.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// TotalSize is the sum of the files' sizes.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// ParseManifest decodes and validates MANIFEST.json strictly: unknown
// fields, duplicate keys, trailing data and invalid values are refused.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := strictDecode(data, &m); err != nil {
		return nil, entryErr(ManifestName, ErrFormat, "%v", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field against the format.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return entryErr(ManifestName, ErrFormat, format, args...)
	}
	if m.Format != FormatVersion {
		return bad("format %d is not %d", m.Format, FormatVersion)
	}
	if err := checkName(m.Name); err != nil {
		return bad("name: %v", err)
	}
	if m.Version == 0 {
		return bad("version must be a positive integer")
	}
	if m.Parent >= m.Version {
		return bad("parent %d is not below version %d", m.Parent, m.Version)
	}
	t, err := time.Parse(time.RFC3339, m.Created)
	if err != nil || !strings.HasSuffix(m.Created, "Z") || t.Location() != time.UTC {
		return bad("created %q is not an RFC 3339 time in UTC", m.Created)
	}
	if m.Targets != nil {
		seen := map[string]bool{}
		for _, e := range m.Targets.Edges {
			if e == "" || seen[e] || !utf8.ValidString(e) || hasControl(e) {
				return bad("targets.edges: empty, duplicate or invalid edge name %q", e)
			}
			seen[e] = true
		}
		for k, v := range m.Targets.Labels {
			if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) || hasControl(k) || hasControl(v) {
				return bad("targets.labels: invalid label %q", k)
			}
		}
	}
	if len(m.Files) == 0 {
		return bad("lists no files")
	}
	if len(m.Files) > MaxFiles {
		return entryErr(ManifestName, ErrTooLarge, "%d files, at most %d", len(m.Files), MaxFiles)
	}
	paths := make(map[string]bool, len(m.Files))
	var total int64
	for i, f := range m.Files {
		if err := CheckPath(f.Path); err != nil {
			return err
		}
		if i > 0 && f.Path <= m.Files[i-1].Path {
			return bad("files not sorted by path or duplicate: %q after %q", f.Path, m.Files[i-1].Path)
		}
		if f.Size < 0 {
			return entryErr(f.Path, ErrFormat, "negative size %d", f.Size)
		}
		if f.Size > MaxFileSize {
			return entryErr(f.Path, ErrTooLarge, "%d bytes, at most %d", f.Size, MaxFileSize)
		}
		total += f.Size
		if total > MaxTotalSize {
			return entryErr(ManifestName, ErrTooLarge, "files exceed %d bytes together", MaxTotalSize)
		}
		if len(f.SHA256) != 64 || strings.ToLower(f.SHA256) != f.SHA256 {
			return entryErr(f.Path, ErrFormat, "sha256 %q is not 64 lowercase hex digits", f.SHA256)
		}
		if _, err := hex.DecodeString(f.SHA256); err != nil {
			return entryErr(f.Path, ErrFormat, "sha256 %q is not 64 lowercase hex digits", f.SHA256)
		}
		paths[f.Path] = true
	}
	for _, f := range m.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if paths[d] {
				return entryErr(f.Path, ErrPath, "%q is also a file", d)
			}
		}
	}
	return nil
}

// checkName checks a release name: 1 to 64 of a-z 0-9 . _ -, starting
// with a letter or digit.
func checkName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%q must be 1 to 64 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("%q: only a-z 0-9 . _ - allowed, starting with a letter or digit", s)
		}
	}
	return nil
}

// CheckName checks a release name against the format.
func CheckName(s string) error {
	if err := checkName(s); err != nil {
		return fmt.Errorf("%w: name %v", ErrFormat, err)
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// prefixes are the allowed first elements of a content path, and whether
// the file must be YAML.
var prefixes = map[string]bool{"models": false, "pipelines": true, "rules": true, "ml": false, "config": false}

// CheckPath checks a content path against the format (docs/format/bundle.md,
// section 4). The error wraps ErrPath and names the path.
func CheckPath(p string) error {
	bad := func(format string, args ...any) error { return entryErr(p, ErrPath, format, args...) }
	switch {
	case p == "":
		return bad("empty path")
	case len(p) > MaxPathLen:
		return bad("longer than %d bytes", MaxPathLen)
	case !utf8.ValidString(p):
		return bad("not valid UTF-8")
	case strings.ContainsRune(p, '\\'):
		return bad("contains a backslash")
	case hasControl(p):
		return bad("contains a NUL or control character")
	case strings.HasPrefix(p, "/"):
		return bad("absolute path")
	case path.Clean(p) != p:
		return bad("not a clean path (want %q)", path.Clean(p))
	}
	elems := strings.Split(p, "/")
	for _, e := range elems {
		if e == ".." || e == "." {
			return bad("contains a %q element", e)
		}
	}
	if len(elems) > MaxPathDepth {
		return bad("more than %d levels", MaxPathDepth)
	}
	yaml, ok := prefixes[elems[0]]
	if !ok || len(elems) < 2 {
		return bad("must be a file under models/, pipelines/, rules/, ml/ or config/")
	}
	if yaml && !IsYAML(p) {
		return bad("files under %s/ must be *.yaml or *.yml", elems[0])
	}
	return nil
}

// IsYAML says whether a content path must hold YAML (pipelines/ and rules/).
func IsYAML(p string) bool {
	for _, ext := range YAMLExts {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// YAMLExts are the extensions of a release's YAML files.
var YAMLExts = []string{".yaml", ".yml"}

// mustBeYAML says whether the format requires the path to parse as YAML.
func mustBeYAML(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return prefixes[first]
}

// Signature is the content of MANIFEST.sig.
type Signature struct {
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
}

// strictDecode decodes one JSON value into v, refusing unknown fields,
// duplicate keys and trailing data.
func strictDecode(data []byte, v any) error {
	if err := jsonstrict.CheckKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
