package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/sluice-edge/sluice/engine/spec"
)

// Decoder and stream bounds (docs/format/bundle.md, section 1).
const (
	maxWindow      = 8 << 20  // zstd window
	maxDecoderMem  = 64 << 20 // zstd decoder memory
	entryOverhead  = 4 << 10  // tar header, PAX header and padding per entry
	trailingZeros  = 20 << 10 // zero blocks after the end of the archive
	headerOverhead = 2*entryOverhead + MaxManifestSize + MaxSignatureSize
)

// SigStatus is what a bundle's signature says.
type SigStatus int

// Signature statuses.
const (
	SigUnsigned  SigStatus = iota // no MANIFEST.sig entry
	SigValid                      // verified with a trusted key
	SigUntrusted                  // names a key the trust store lacks
	SigBad                        // malformed or does not verify
)

// String names the status.
func (s SigStatus) String() string {
	switch s {
	case SigValid:
		return "valid"
	case SigUntrusted:
		return "untrusted key"
	case SigBad:
		return "bad"
	}
	return "unsigned"
}

// Bundle is what reading a bundle found.
type Bundle struct {
	// Manifest is the parsed manifest; nil when it could not be read.
	Manifest *Manifest
	// ManifestBytes are MANIFEST.json's bytes as stored.
	ManifestBytes []byte
	// Signature is MANIFEST.sig; nil when unsigned or unreadable.
	Signature *Signature
	// Status is the signature's status against the trust store.
	Status SigStatus
	// SigErr says why Status is not SigValid.
	SigErr error
}

// KeyID is the id of the key the signature names ("" when unsigned).
func (b *Bundle) KeyID() string {
	if b.Signature == nil {
		return ""
	}
	return b.Signature.KeyID
}

// Verify reads a whole bundle without writing anything: the signature
// must verify with a trusted key before any content is read, and every
// file must match the manifest.
func Verify(r io.Reader, trust *Trust) (*Bundle, error) {
	return read(r, trust, true, nil)
}

// Inspect reads a whole bundle whatever its signature, for people: the
// returned Bundle reports the signature's status, and the error says
// whether the contents match the manifest. Never decide to apply a
// bundle on Inspect; use Verify or Unpack.
func Inspect(r io.Reader, trust *Trust) (*Bundle, error) {
	return read(r, trust, false, nil)
}

// Unpack verifies a bundle like Verify while writing its files into a new
// staging directory (mode 0700) inside dir, and returns that directory's
// path once every file matched. On any error the staging directory is
// removed and nothing is left in dir.
func Unpack(r io.Reader, trust *Trust, dir string) (*Bundle, string, error) {
	staging, err := os.MkdirTemp(dir, ".bundle-staging-")
	if err != nil {
		return nil, "", fmt.Errorf("unpack: %w", err)
	}
	root, err := os.OpenRoot(staging)
	if err != nil {
		os.RemoveAll(staging)
		return nil, "", fmt.Errorf("unpack: %w", err)
	}
	b, err := read(r, trust, true, root)
	if cerr := root.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("unpack: %w", cerr)
	}
	if err != nil {
		if rerr := os.RemoveAll(staging); rerr != nil {
			err = fmt.Errorf("%w (and removing %s: %v)", err, staging, rerr)
		}
		return b, "", err
	}
	return b, staging, nil
}

// limitReader counts the decompressed bytes and refuses more than limit.
type limitReader struct {
	r        io.Reader
	n, limit int64
	exceeded bool
}

var errLimit = errors.New("decompressed stream exceeds its bound")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n >= l.limit {
		// At the bound: the stream may end here, but may not go on.
		var one [1]byte
		k, err := l.r.Read(one[:])
		if k > 0 {
			l.exceeded = true
			return 0, errLimit
		}
		return 0, err
	}
	if int64(len(p)) > l.limit-l.n {
		p = p[:l.limit-l.n]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// stream is a bundle being read front to back.
type stream struct {
	lim *limitReader
	tr  *tar.Reader
}

// wrap turns a read error into a bundle error about entry.
func (s *stream) wrap(entry string, err error) error {
	var ee *EntryError
	if errors.As(err, &ee) {
		return err
	}
	if s.lim.exceeded || errors.Is(err, errLimit) {
		return entryErr(entry, ErrTooLarge, "decompressed stream exceeds %d bytes", s.lim.limit)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return entryErr(entry, ErrFormat, "truncated")
	}
	return entryErr(entry, ErrFormat, "%v", err)
}

// next returns the next entry's header, which must be a regular file, or
// io.EOF at the end of the archive. after names the previous entry for
// errors ("" at the start).
func (s *stream) next(after string) (*tar.Header, error) {
	hdr, err := s.tr.Next()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		where := "after " + after
		if after == "" {
			where = ManifestName
		}
		return nil, s.wrap(where, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil, entryErr(hdr.Name, ErrPath, "not a regular file (tar type %q)", hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, entryErr(hdr.Name, ErrPath, "sparse file")
		}
	}
	return hdr, nil
}

// small reads a whole small entry.
func (s *stream) small(hdr *tar.Header, name string, max int64) ([]byte, error) {
	if hdr.Name != name {
		return nil, entryErr(hdr.Name, ErrFormat, "expected %s here", name)
	}
	if hdr.Size > max {
		return nil, entryErr(name, ErrTooLarge, "%d bytes, at most %d", hdr.Size, max)
	}
	buf := make([]byte, hdr.Size)
	if _, err := io.ReadFull(s.tr, buf); err != nil {
		return nil, s.wrap(name, err)
	}
	return buf, nil
}

// checkSignature verifies the signature entry's bytes over the manifest.
func checkSignature(data, manifest []byte, trust *Trust) (*Signature, SigStatus, error) {
	var sig Signature
	if err := strictDecode(data, &sig); err != nil {
		return nil, SigBad, entryErr(SignatureName, ErrSignature, "%v", err)
	}
	if sig.Algorithm != "ed25519" {
		return &sig, SigBad, entryErr(SignatureName, ErrSignature, "algorithm %q is not ed25519", sig.Algorithm)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig.Signature)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return &sig, SigBad, entryErr(SignatureName, ErrSignature, "signature is not %d bytes of base64", ed25519.SignatureSize)
	}
	var key ed25519.PublicKey
	if trust != nil {
		key = trust.keys[sig.KeyID]
	}
	if key == nil {
		return &sig, SigUntrusted, entryErr(SignatureName, ErrUntrustedKey, "key id %q", sig.KeyID)
	}
	if !ed25519.Verify(key, manifest, raw) {
		return &sig, SigBad, entryErr(SignatureName, ErrSignature, "does not verify with key %s", sig.KeyID)
	}
	return &sig, SigValid, nil
}

func encodeSig(raw []byte) string { return base64.StdEncoding.EncodeToString(raw) }

// read reads a bundle front to back. strict requires a valid signature
// before anything after it is read; root, when not nil, receives the files.
func read(r io.Reader, trust *Trust, strict bool, root *os.Root) (*Bundle, error) {
	zr, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxDecoderMem),
		zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer zr.Close()
	s := &stream{lim: &limitReader{r: zr, limit: headerOverhead}}
	s.tr = tar.NewReader(s.lim)
	b := &Bundle{}

	hdr, err := s.next("")
	if err == io.EOF {
		return b, entryErr(ManifestName, ErrFormat, "missing: empty archive")
	}
	if err != nil {
		return b, err
	}
	if b.ManifestBytes, err = s.small(hdr, ManifestName, MaxManifestSize); err != nil {
		return b, err
	}

	// The signature, verified before the manifest is parsed or any
	// content is read.
	hdr, err = s.next(ManifestName)
	if err != nil && err != io.EOF {
		return b, err
	}
	var pending *tar.Header // a content header read in place of the signature
	if err == nil && hdr.Name == SignatureName {
		data, err := s.small(hdr, SignatureName, MaxSignatureSize)
		if err != nil {
			return b, err
		}
		b.Signature, b.Status, b.SigErr = checkSignature(data, b.ManifestBytes, trust)
	} else {
		pending = hdr
		b.Status, b.SigErr = SigUnsigned, entryErr(SignatureName, ErrUnsigned, "no %s entry", SignatureName)
	}
	if strict && b.Status != SigValid {
		return b, b.SigErr
	}

	m, err := ParseManifest(b.ManifestBytes)
	if err != nil {
		return b, err
	}
	b.Manifest = m
	s.lim.limit += m.TotalSize() + int64(len(m.Files)+1)*entryOverhead + trailingZeros

	after := SignatureName
	for i, f := range m.Files {
		if pending != nil {
			hdr, pending = pending, nil
		} else if hdr, err = s.next(after); err != nil {
			if err == io.EOF {
				return b, entryErr(f.Path, ErrFormat, "missing (archive ends)")
			}
			return b, err
		}
		if hdr.Name != f.Path {
			return b, unexpected(m, i, hdr.Name)
		}
		if hdr.Size != f.Size {
			reason := ErrFormat
			if hdr.Size > f.Size {
				reason = ErrTooLarge
			}
			return b, entryErr(f.Path, reason, "tar says %d bytes, the manifest %d", hdr.Size, f.Size)
		}
		if err := s.content(f, root); err != nil {
			return b, err
		}
		after = f.Path
	}
	if pending == nil {
		hdr, err = s.next(after)
	} else {
		hdr, err = pending, nil
	}
	if err == nil {
		if perr := CheckPath(hdr.Name); perr != nil {
			return b, perr
		}
		return b, entryErr(hdr.Name, ErrFormat, "not in the manifest")
	}
	if err != io.EOF {
		return b, err
	}
	return b, s.finish()
}

// unexpected explains an entry found where manifest file i was expected.
func unexpected(m *Manifest, i int, name string) error {
	if err := CheckPath(name); err != nil && name != ManifestName && name != SignatureName {
		return err
	}
	for j, f := range m.Files {
		if f.Path == name {
			if j < i {
				return entryErr(name, ErrFormat, "duplicate entry")
			}
			return entryErr(name, ErrFormat, "out of order: expected %q", m.Files[i].Path)
		}
	}
	return entryErr(name, ErrFormat, "not in the manifest (expected %q)", m.Files[i].Path)
}

// content reads one file's bytes, hashing them and writing them under root
// when it is not nil.
func (s *stream) content(f File, root *os.Root) error {
	h := sha256.New()
	var dst io.Writer = h
	var out *os.File
	if root != nil {
		if d := path.Dir(f.Path); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return entryErr(f.Path, ErrPath, "%v", err)
			}
		}
		var err error
		out, err = root.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|spec.NoFollow, 0o600)
		if err != nil {
			return entryErr(f.Path, ErrPath, "%v", err)
		}
		defer out.Close()
		dst = io.MultiWriter(h, out)
	}
	n, err := io.Copy(dst, s.tr)
	if err != nil {
		if out != nil && !isReadErr(err, s) {
			return fmt.Errorf("unpack %s: %w", f.Path, err)
		}
		return s.wrap(f.Path, err)
	}
	if n != f.Size {
		return entryErr(f.Path, ErrFormat, "truncated: %d of %d bytes", n, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return entryErr(f.Path, ErrDigest, "content has %s, the manifest says %s", got, f.SHA256)
	}
	if out != nil {
		if err := out.Sync(); err != nil {
			return fmt.Errorf("unpack %s: %w", f.Path, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("unpack %s: %w", f.Path, err)
		}
	}
	return nil
}

// isReadErr says whether a copy error came from the bundle rather than
// from writing the file: a write error is a local failure, not a bad
// bundle.
func isReadErr(err error, s *stream) bool {
	var pe *os.PathError
	return !errors.As(err, &pe) || s.lim.exceeded
}

// finish checks that only zero blocks follow the end of the archive and
// reads the zstd stream to its end, which verifies its checksum.
func (s *stream) finish() error {
	var buf [4096]byte
	for {
		n, err := s.lim.Read(buf[:])
		for _, c := range buf[:n] {
			if c != 0 {
				return entryErr("", ErrFormat, "data after the end of the archive")
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return s.wrap("end of archive", err)
		}
	}
}

// ErrorReason returns the reason of a bundle error without the entry, for
// short reports; it returns err's text when err is not a bundle error.
func ErrorReason(err error) string {
	var ee *EntryError
	if errors.As(err, &ee) {
		return ee.Err.Error()
	}
	return err.Error()
}

// ManifestSummary formats a manifest's identity in one line.
func ManifestSummary(m *Manifest) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s v%d", m.Name, m.Version)
	if m.Parent != 0 {
		fmt.Fprintf(&b, " (parent v%d)", m.Parent)
	}
	fmt.Fprintf(&b, ", created %s, %d files, %d bytes", m.Created, len(m.Files), m.TotalSize())
	return b.String()
}
