package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// StartsFile is the file, in the engine's health directory, that counts
// the engine's starts (RecordStart).
const StartsFile = "starts.json"

// startLog is the content of StartsFile.
type startLog struct {
	// Running is set from a start until its clean stop: a start that
	// finds it set follows a run that did not stop cleanly.
	Running bool `json:"running"`
	// Restarts are the unclean restarts kept, oldest first.
	Restarts []time.Time `json:"restarts"`
}

// RecordStart records a start of the engine at now in dir (created when
// missing; the engine holds the lock of its data directory). A start after
// a run that did not record its stop (RecordStop) — it crashed, was
// killed, lost power or exited on an error — is an unclean restart.
// RecordStart returns the unclean restarts of the last keep, oldest first
// (at most 1000), this one included; they are what engine_restarts
// counts, so a crash loop is seen across the engine's restarts. A damaged
// file starts the count again.
func RecordStart(dir string, now time.Time, keep time.Duration) ([]time.Time, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	name := filepath.Join(dir, StartsFile)
	var l startLog
	data, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("health: %w", err)
	default:
		if json.Unmarshal(data, &l) != nil {
			l = startLog{}
		}
	}
	if l.Running {
		l.Restarts = append(l.Restarts, now.UTC())
	}
	kept := l.Restarts[:0]
	for _, t := range l.Restarts {
		if t.After(now.Add(-keep)) && !t.After(now) {
			kept = append(kept, t)
		}
	}
	if len(kept) > maxRestarts {
		kept = kept[len(kept)-maxRestarts:]
	}
	l.Restarts, l.Running = kept, true
	if err := writeJSON(name, l); err != nil {
		return nil, err
	}
	return append([]time.Time(nil), kept...), nil
}

// RecordStop records in dir that the engine stopped cleanly: the next
// start is no restart to count.
func RecordStop(dir string) error {
	name := filepath.Join(dir, StartsFile)
	var l startLog
	if data, err := os.ReadFile(name); err == nil {
		_ = json.Unmarshal(data, &l)
	}
	l.Running = false
	return writeJSON(name, l)
}

// writeJSON writes v to name atomically: a temporary file, synced,
// renamed over name, and the directory synced.
func writeJSON(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("health: write %s: %w", name, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// ReadRaised returns the raised conditions WriteRaised kept in name
// (none when it is missing or damaged).
func ReadRaised(name string) []Raised {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil
	}
	var rs []Raised
	if json.Unmarshal(data, &rs) != nil {
		return nil
	}
	return rs
}

// WriteRaised keeps rs in name, atomically, for the next run (Restore).
func WriteRaised(name string, rs []Raised) error {
	if rs == nil {
		rs = []Raised{}
	}
	return writeJSON(name, rs)
}

// RaisedFile is the file, in the engine's health directory, that keeps
// the raised alerts' conditions (WriteRaised) for the next run.
const RaisedFile = "raised.json"

// UnsentFile is the file, next to the raised alerts (RaisedFile), that
// keeps the health alerts no sink took yet (WriteUnsent), so that the next
// run offers them again.
const UnsentFile = "unsent.json"

// ReadUnsent returns the alerts WriteUnsent kept in name, oldest first, at
// most the newest max of them (none when the file is missing or damaged).
func ReadUnsent(name string, max int) []engine.EngineAlert {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil
	}
	var as []engine.EngineAlert
	if json.Unmarshal(data, &as) != nil {
		return nil
	}
	if max >= 0 && len(as) > max {
		as = as[len(as)-max:]
	}
	return as
}

// WriteUnsent keeps the alerts as, oldest first, in name, atomically, for
// the next run (ReadUnsent).
func WriteUnsent(name string, as []engine.EngineAlert) error {
	if as == nil {
		as = []engine.EngineAlert{}
	}
	return writeJSON(name, as)
}
