package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-edge/sluice/engine/spec"
)

// maxTokenFile bounds a token file.
const maxTokenFile = 4 << 10

// EnsureToken returns the bearer token kept in name, creating the file
// (mode 0600, 32 random bytes in hex) when it does not exist.
func EnsureToken(name string) (string, error) {
	tok, err := ReadToken(name)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return tok, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	tok = hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|spec.NoFollow, 0o600)
	if errors.Is(err, os.ErrExist) {
		return ReadToken(name) // made by another process meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("api token: %w", err)
	}
	return tok, syncDir(filepath.Dir(name))
}

// ReadToken reads the bearer token kept in name. The file must be a
// regular file of the process's user that neither group nor others may
// read.
func ReadToken(name string) (string, error) {
	f, fi, err := spec.OpenRegular(name, spec.NoFollow)
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	defer f.Close()
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("api token: %s may be read by other users (mode %v): chmod 600 it", name, fi.Mode().Perm())
	}
	if err := checkOwner(name, fi); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	data, err := spec.ReadRegular(f, fi, maxTokenFile)
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("api token: %s is empty", name)
	}
	return tok, nil
}
