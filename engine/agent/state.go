package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-edge/sluice/engine/bundle"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Names in the state directory (see the package documentation).
const (
	releasesDir  = "releases"
	stagingDir   = "staging"
	pendingDir   = "pending"
	incomingDir  = "incoming"
	currentFile  = "current.json"
	reportsFile  = "reports.jsonl"
	lockFile     = "lock"
	TokenFile    = "api.token"
	manifestFile = "MANIFEST.json"
	// maxStateFile bounds current.json and a release's manifest copy.
	maxStateFile = 2 << 20
	// maxReportLine bounds one line of reports.jsonl when it is read.
	maxReportLine = 64 << 10
)

// Current is current.json: the release running on this edge.
type Current struct {
	// Name and Version identify the release.
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	// Applied is when the release started running.
	Applied time.Time `json:"applied"`
	// Dir is the release's directory relative to the state directory
	// (releases/<name>/<version>).
	Dir string `json:"dir"`
	// Versions is the highest version applied of every release name: a
	// bundle must be newer than the one of its name.
	Versions map[string]uint64 `json:"versions"`
}

// Outcomes of an apply.
const (
	Applied  = "applied"
	Rejected = "rejected"
)

// Report is one line of reports.jsonl: the outcome of one apply.
type Report struct {
	Time    time.Time `json:"time"`
	Bundle  string    `json:"bundle"`
	Version uint64    `json:"version"`
	Outcome string    `json:"outcome"`
	// Reason says why a bundle was rejected.
	Reason string `json:"reason,omitempty"`
	// Location is where the reason lies: file:line:col of a release's
	// file, or the bundle entry.
	Location string `json:"location,omitempty"`
	// Steps is what the switch did, one line per pipeline.
	Steps string `json:"steps,omitempty"`
	// File is the bundle file imported.
	File string `json:"file,omitempty"`
}

// String is the report in one line: "applied windfarm v7" or
// "rejected windfarm v7: reason".
func (r Report) String() string {
	id := "bundle"
	if r.Bundle != "" {
		id = fmt.Sprintf("%s v%d", r.Bundle, r.Version)
	}
	if r.Outcome == Applied {
		return "applied " + id
	}
	s := "rejected " + id
	if r.File != "" && r.Bundle == "" {
		s += " " + r.File
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// writeFileAtomic writes data to name through a temporary file in the same
// directory: written, synced, renamed over name, and the directory synced.
// A crash leaves either the old or the new file, never a mix. The file is
// made 0644: the state files written so (current.json, edge.json) hold no
// secret.
func writeFileAtomic(name string, data []byte, hook func(string)) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && hook != nil {
		hook(StepCurrentTemp)
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(dir)
}

// syncDir makes a directory's entries (a rename, a new file) durable.
func syncDir(dir string) error {
	if err := disk.OS.SyncDir(dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// readBounded reads a regular state file of at most limit bytes (a named
// pipe or a device in its place is refused at once, never waited on).
func readBounded(name string, limit int64) ([]byte, error) {
	f, fi, err := spec.OpenRegular(name, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return spec.ReadRegular(f, fi, limit)
}

// ReadCurrent reads current.json in the state directory dir; it returns
// nil and no error when no release has been applied.
func ReadCurrent(dir string) (*Current, error) {
	data, err := readBounded(filepath.Join(dir, currentFile), maxStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("current release: %w", err)
	}
	var c Current
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("current release: %s: %w", filepath.Join(dir, currentFile), err)
	}
	if bundle.CheckName(c.Name) != nil || c.Version == 0 || c.Dir != filepath.Join(releasesDir, c.Name, fmt.Sprint(c.Version)) {
		return nil, fmt.Errorf("current release: %s names no valid release", filepath.Join(dir, currentFile))
	}
	return &c, nil
}

// appendReport appends one record to reports.jsonl and syncs it. When the
// file has reached limit bytes it is first rotated to reports.jsonl.1 (the
// previous rotation is replaced), so the reports take at most twice limit.
func appendReport(dir string, r Report, limit int64) error {
	name := filepath.Join(dir, reportsFile)
	if st, err := os.Stat(name); err == nil && st.Size() >= limit {
		if err := os.Rename(name, name+".1"); err != nil {
			return fmt.Errorf("rotate reports: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	r.bound()
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	line = append(line, '\n')
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	// A crash in the middle of an earlier append left a torn line: end it,
	// so that this record stays readable.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	_, err = f.Write(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return syncDir(dir)
}

// bound clips the report's texts so that it is one readable line of
// reports.jsonl (at most maxReportLine) whatever a bundle held.
func (r *Report) bound() {
	r.Reason, r.Location, r.Steps = clip(r.Reason, maxReason), clip(r.Location, maxLocation), clip(r.Steps, maxSteps)
}

// ReadReports returns the apply reports kept in the state directory dir,
// oldest first (the rotated file, then the current one). A torn last line
// (a crash in the middle of an append) is skipped.
func ReadReports(dir string, limit int64) ([]Report, error) {
	var out []Report
	for _, name := range []string{reportsFile + ".1", reportsFile} {
		data, err := readBounded(filepath.Join(dir, name), 2*limit+maxReportLine)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("reports: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 4096), maxReportLine)
		for sc.Scan() {
			var r Report
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Outcome != "" {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// lastApplied is the last "applied" report, or nil.
func lastApplied(rs []Report) *Report {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Outcome == Applied {
			return &rs[i]
		}
	}
	return nil
}
