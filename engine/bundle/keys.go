package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluice-edge/sluice/engine/spec"
)

// maxKeyFile bounds the bytes read from a key file.
const maxKeyFile = 16 << 10

// maxTrustKeys bounds the keys of a trust store directory.
const maxTrustKeys = 1024

// KeyID is the hex of the first 8 bytes of the SHA-256 of a public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return pub, priv, nil
}

// WritePrivateKey writes a private key as PKCS #8 PEM to a new file of
// mode 0600; an existing file is not overwritten.
func WritePrivateKey(name string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("private key %s: %w", name, err)
	}
	return writeNew(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// WritePublicKey writes a public key as PKIX PEM to a new file of mode
// 0644; an existing file is not overwritten.
func WritePublicKey(name string, key ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return fmt.Errorf("public key %s: %w", name, err)
	}
	return writeNew(name, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|spec.NoFollow, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("write key %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("write key %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write key %s: %w", name, err)
	}
	return nil
}

// readKeyFile reads a regular key file, bounded, without following a
// symbolic link; private refuses a file group or others may read.
func readKeyFile(name string, private bool) ([]byte, error) {
	f, fi, err := spec.OpenRegular(name, spec.NoFollow)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	if private && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read key %s: mode %04o lets group or others read it; chmod 600 it", name, fi.Mode().Perm())
	}
	data, err := spec.ReadRegular(f, fi, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return data, nil
}

// ReadPrivateKey reads a PKCS #8 PEM Ed25519 private key file, refusing
// it when group or others may read it.
func ReadPrivateKey(name string) (ed25519.PrivateKey, error) {
	data, err := readKeyFile(name, true)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read key %s: not a PEM \"PRIVATE KEY\"", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("read key %s: not an Ed25519 key (%T)", name, k)
	}
	return priv, nil
}

// ParsePublicKey parses a PKIX PEM Ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("not an Ed25519 key (%T)", k)
	}
	return pub, nil
}

// ReadPublicKey reads a PKIX PEM Ed25519 public key file.
func ReadPublicKey(name string) (ed25519.PublicKey, error) {
	data, err := readKeyFile(name, false)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	return pub, nil
}

// Trust is a set of public keys a bundle's signature must come from.
type Trust struct {
	keys map[string]ed25519.PublicKey
}

// NewTrust makes a trust store of the given keys.
func NewTrust(keys ...ed25519.PublicKey) *Trust {
	t := &Trust{keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		t.keys[KeyID(k)] = k
	}
	return t
}

// LoadTrust reads a trust store: one public key file, or a directory of
// them (*.pub and *.pem; other names are ignored).
func LoadTrust(name string) (*Trust, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	if !st.IsDir() {
		k, err := ReadPublicKey(name)
		if err != nil {
			return nil, fmt.Errorf("trust store: %w", err)
		}
		return NewTrust(k), nil
	}
	ents, err := os.ReadDir(name)
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	var keys []ed25519.PublicKey
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".pub") && !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		if len(keys) >= maxTrustKeys {
			return nil, fmt.Errorf("trust store %s: more than %d keys", name, maxTrustKeys)
		}
		k, err := ReadPublicKey(filepath.Join(name, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("trust store: %w", err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("trust store %s: no *.pub or *.pem public key files", name)
	}
	return NewTrust(keys...), nil
}

// KeyIDs lists the ids of the trusted keys, sorted.
func (t *Trust) KeyIDs() []string {
	if t == nil {
		return nil
	}
	ids := make([]string, 0, len(t.keys))
	for id := range t.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Sign signs a manifest's bytes with key.
func Sign(manifest []byte, key ed25519.PrivateKey) *Signature {
	return &Signature{
		Algorithm: "ed25519",
		KeyID:     KeyID(key.Public().(ed25519.PublicKey)),
		Signature: encodeSig(ed25519.Sign(key, manifest)),
	}
}
