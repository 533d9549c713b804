package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-edge/sluice/engine/spec"
)

// Pending is the outcome of a bundle an offline import staged for the
// next start (never written to reports.jsonl).
const Pending = "pending"

// Status is what an edge runs and what it last did.
type Status struct {
	Edge   string            `json:"edge"`
	Labels map[string]string `json:"labels,omitempty"`
	// Engine says whether a running engine answered (false: read from the
	// state directory).
	Engine bool `json:"engine"`
	// Current is the release applied last (nil: none, the engine runs the
	// pipelines of its command line or configuration).
	Current *Current `json:"current,omitempty"`
	// Pipelines are the states of the running pipelines (engine only).
	Pipelines []PipelineState `json:"pipelines,omitempty"`
	// Last is the outcome of the last apply.
	Last *Report `json:"last,omitempty"`
	// Pending lists the bundles staged for the next start.
	Pending []string `json:"pending,omitempty"`
}

// Status reports the running engine's state. It does not wait for an
// apply in progress.
func (a *Agent) Status() Status {
	s := Status{Edge: a.opts.Edge, Labels: a.opts.Labels, Engine: true, Current: a.Current()}
	if st, ok := a.runner.(Stater); ok {
		s.Pipelines = st.Pipelines()
	}
	a.smu.Lock()
	if a.last != nil {
		last := *a.last
		s.Last = &last
	}
	a.smu.Unlock()
	s.Pending, _ = a.pendingFiles()
	return s
}

// ReadStatus reads the status of a stopped engine from its state
// directory dir.
func ReadStatus(dir, edge string) (Status, error) {
	s := Status{Edge: edge}
	cur, err := ReadCurrent(dir)
	if err != nil {
		return s, err
	}
	s.Current = cur
	rs, err := ReadReports(dir, DefaultMaxReportBytes*4)
	if err != nil {
		return s, err
	}
	if len(rs) > 0 {
		s.Last = &rs[len(rs)-1]
	}
	entries, err := os.ReadDir(filepath.Join(dir, pendingDir))
	if err != nil && !os.IsNotExist(err) {
		return s, fmt.Errorf("status: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".bundle") && !strings.HasPrefix(e.Name(), ".") {
			s.Pending = append(s.Pending, e.Name())
		}
	}
	slices.Sort(s.Pending)
	return s, nil
}

// Stage is an offline import: it checks the bundle file name like an
// apply (size, signature, digests, targets, version newer than the applied
// one and than any staged one) and copies it into pending/, where the next
// start applies it. A refused bundle gets a "rejected" report; a staged one
// returns a report with outcome Pending.
func (a *Agent) Stage(name string) (Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rep := Report{File: CleanFileName(name)}
	pending, err := a.pendingFiles()
	if err != nil {
		return rep, err
	}
	if len(pending) >= maxPending {
		return a.reject(rep, fmt.Errorf("%d bundles are already waiting for the next start", len(pending)))
	}
	// Check the copy, not the original: what is staged is what was
	// checked.
	tmp, err := copyBounded(name, filepath.Join(a.opts.Dir, pendingDir), a.opts.MaxBundleBytes)
	if err != nil {
		return a.reject(rep, err)
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmp)
		}
	}()
	f, m, _, err := a.verify(tmp)
	if m != nil {
		rep.Bundle, rep.Version = m.Name, m.Version
	}
	if err != nil {
		return a.reject(rep, err)
	}
	f.Close()
	for _, p := range pending {
		if n, v, ok := parsePending(p); ok && n == m.Name && v >= m.Version {
			return a.reject(rep, fmt.Errorf("%w: %s v%d is already waiting for the next start", ErrVersion, n, v))
		}
	}
	final := filepath.Join(a.opts.Dir, pendingDir, fmt.Sprintf("%020d-%s-v%d.bundle", a.opts.Now().UnixNano(), m.Name, m.Version))
	if err := os.Rename(tmp, final); err != nil {
		return rep, fmt.Errorf("stage: %w", err)
	}
	keep = true
	if err := syncDir(filepath.Dir(final)); err != nil {
		return rep, err
	}
	rep.Time = a.opts.Now().UTC()
	rep.Outcome = Pending
	rep.File = filepath.Base(final)
	return rep, nil
}

// parsePending reads the name and version out of a pending file's name
// (<time>-<name>-v<version>.bundle).
func parsePending(file string) (string, uint64, bool) {
	base := strings.TrimSuffix(file, ".bundle")
	_, rest, ok := strings.Cut(base, "-")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndex(rest, "-v")
	if i < 0 {
		return "", 0, false
	}
	v, err := strconv.ParseUint(rest[i+2:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], v, true
}

// copyBounded copies the regular file name into a new temporary file in
// dir, refusing more than limit bytes, and syncs it.
func copyBounded(name, dir string, limit int64) (string, error) {
	in, fi, err := spec.OpenRegular(name, spec.NoFollow)
	if err != nil {
		return "", fmt.Errorf("open bundle: %w", err)
	}
	defer in.Close()
	if fi.Size() > limit {
		return "", errBundleSize(fi.Size(), limit)
	}
	out, err := os.CreateTemp(dir, ".stage-*.bundle")
	if err != nil {
		return "", fmt.Errorf("stage: %w", err)
	}
	n, err := io.Copy(out, io.LimitReader(in, limit+1))
	if err == nil && n > limit {
		err = errBundleSize(-1, limit)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

// jsonIndent encodes v for a state file.
func jsonIndent(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return append(data, '\n'), nil
}
