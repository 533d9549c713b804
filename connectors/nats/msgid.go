package nats

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// KeyFile is the file, under an engine's data directory, holding the
// secret that signs the Nats-Msg-Id of every message the nats sinks of
// that data directory publish.
const KeyFile = "nats-msgid.key"

// keyBytes is the size of the key.
const keyBytes = 32

// macBytes is how much of the HMAC-SHA256 a Nats-Msg-Id carries.
const macBytes = 16

// MsgID returns the Nats-Msg-Id of the message of stable ID id: the ID,
// '#' and the first 16 bytes of HMAC-SHA256(key, id), base64url without
// padding. JetStream deduplicates by Nats-Msg-Id across all subjects of a
// stream; a publisher that does not hold the key cannot produce the
// Nats-Msg-Id of another's message, so it cannot make JetStream drop it
// as a duplicate. The same ID under the same key always gives the same
// Nats-Msg-Id, so retries, restarts and replays are still deduplicated.
func MsgID(key []byte, id string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	sum := mac.Sum(nil)
	return id + "#" + base64.RawURLEncoding.EncodeToString(sum[:macBytes])
}

var keys = struct {
	sync.Mutex
	byDir   map[string][]byte
	process []byte
}{byDir: map[string][]byte{}}

// ProcessKey returns a random key made once per process, the key of
// publishers without a data directory: their Nats-Msg-Ids change with
// every start, so JetStream deduplicates their retries only within one
// run.
func ProcessKey() ([]byte, error) {
	keys.Lock()
	defer keys.Unlock()
	if keys.process == nil {
		k := make([]byte, keyBytes)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("nats: message id key: %w", err)
		}
		keys.process = k
	}
	return keys.process, nil
}

// LoadKey returns the key of the data directory dir, read from
// dir/KeyFile, which is created (mode 0600, atomically: a key is written
// whole or not at all, and of several engines or sinks creating it at
// once all read the one that was linked first) when missing. An empty dir
// gives ProcessKey. The key is read once per process and never logged.
func LoadKey(dir string) ([]byte, error) {
	if dir == "" {
		return ProcessKey()
	}
	path, err := filepath.Abs(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	keys.Lock()
	defer keys.Unlock()
	if k, ok := keys.byDir[path]; ok {
		return k, nil
	}
	k, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = createKey(path); err == nil {
			k, err = readKey(path)
		}
	}
	if err != nil {
		return nil, err
	}
	keys.byDir[path] = k
	return k, nil
}

// readKey reads a key file, which must be a regular file of keyBytes bytes.
func readKey(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != keyBytes {
		return nil, fmt.Errorf("nats: message id key %s must be a regular file of %d bytes; remove it to create a new key (the messages of this data directory then get new Nats-Msg-Ids)", path, keyBytes)
	}
	k, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	if len(k) != keyBytes {
		return nil, fmt.Errorf("nats: message id key %s changed while read", path)
	}
	return k, nil
}

// createKey writes a new random key to a temporary file, syncs it and
// links it to path; a key linked there first is kept.
func createKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("nats: message id key: %w", err)
	}
	k := make([]byte, keyBytes)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("nats: message id key: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+KeyFile+".*")
	if err != nil {
		return fmt.Errorf("nats: message id key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(k)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("nats: message id key: %w", err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("nats: message id key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// LoadKeyFS is LoadKey on fsys, the file system that holds an engine's
// durable state (engine.BuildContext.FS, a test seam); nil is LoadKey. The
// key is written to a temporary file, synced, renamed into place and the
// directory synced, so that a power loss leaves the whole key or none; the
// engine's lock on its data directory keeps a second creator away.
func LoadKeyFS(fsys disk.FS, dir string) ([]byte, error) {
	if fsys == nil || dir == "" {
		return LoadKey(dir)
	}
	path := filepath.Join(dir, KeyFile)
	k, err := readKeyFS(fsys, path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k = make([]byte, keyBytes)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	tmp := filepath.Join(dir, "."+KeyFile+".tmp")
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	_, err = f.Write(k)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	return readKeyFS(fsys, path)
}

// readKeyFS reads a key file on fsys; a missing file is fs.ErrNotExist.
func readKeyFS(fsys disk.FS, path string) ([]byte, error) {
	if _, err := fsys.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("nats: message id key: %w", err)
	}
	if n != keyBytes {
		return nil, fmt.Errorf("nats: message id key %s must be a regular file of %d bytes; remove it to create a new key (the messages of this data directory then get new Nats-Msg-Ids)", path, keyBytes)
	}
	k := make([]byte, keyBytes)
	if n, err := f.ReadAt(k, 0); n != keyBytes {
		return nil, fmt.Errorf("nats: message id key: read %d bytes: %w", n, err)
	}
	return k, nil
}
