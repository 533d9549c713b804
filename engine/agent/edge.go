package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/spec"
)

// edgeFile is the record of the configuration a running engine uses,
// written at every start so that `sluice import --data-dir` and `sluice
// status --data-dir` work without the configuration file.
const edgeFile = "edge.json"

// EdgeRecord is edge.json: the settings of the engine that last ran on
// the state directory, with absolute paths.
type EdgeRecord struct {
	Config         string            `json:"config"`
	Edge           string            `json:"edge"`
	Labels         map[string]string `json:"labels,omitempty"`
	Trust          string            `json:"trust"`
	Listen         string            `json:"listen"`
	TokenFile      string            `json:"token_file"`
	MaxBundleBytes int64             `json:"max_bundle_bytes"`
	KeepReleases   int               `json:"keep_releases"`
}

// Record is the record of c.
func (c *Config) Record() EdgeRecord {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	return EdgeRecord{Config: abs(c.File), Edge: c.Edge, Labels: c.Labels, Trust: abs(c.Trust), Listen: c.Listen,
		TokenFile: abs(c.TokenFile), MaxBundleBytes: c.MaxBundleBytes, KeepReleases: c.KeepReleases}
}

// config is the configuration the record describes (pipelines excepted).
func (r EdgeRecord) config(dataDir string) *Config {
	return &Config{File: r.Config, Edge: r.Edge, DataDir: dataDir, Trust: r.Trust, Labels: r.Labels, Listen: r.Listen,
		TokenFile: r.TokenFile, MaxBundleBytes: r.MaxBundleBytes, KeepReleases: r.KeepReleases}
}

// WriteEdgeRecord writes edge.json into the state directory dir.
func WriteEdgeRecord(dir string, r EdgeRecord) error {
	data, err := jsonIndent(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, edgeFile), data, nil)
}

// readRecord reads edge.json of the state directory dir. The record names
// the token file import and status read and the address they send the
// token to: it is believed only when this process's user owns it and the
// directory, and no other user may write them.
func readRecord(dir string) ([]byte, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if err := checkStateDir(dir, fi); err != nil {
		return nil, err
	}
	name := filepath.Join(dir, edgeFile)
	f, fi, err := spec.OpenRegular(name, spec.NoFollow)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkOwner(name, fi); err != nil {
		return nil, err
	}
	return spec.ReadRegular(f, fi, maxStateFile)
}

// BoundListen returns the address the engine running with cfg bound, as
// its edge.json records it, or cfg.Listen when the record is of another
// configuration, missing or not to be believed.
func BoundListen(cfg *Config) string {
	data, err := readRecord(cfg.AgentDir())
	if err != nil {
		return cfg.Listen
	}
	var r EdgeRecord
	if json.Unmarshal(data, &r) != nil || r.Listen == "" || r.Config != cfg.Record().Config {
		return cfg.Listen
	}
	return r.Listen
}

// ConfigFromDataDir returns the configuration the engine that last ran on
// dataDir used, from its edge.json, which this process's user must own.
func ConfigFromDataDir(dataDir string) (*Config, error) {
	dir := filepath.Join(dataDir, "agent")
	data, err := readRecord(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no engine has run there with --config (no %s); give --config", dataDir, filepath.Join("agent", edgeFile))
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var r EdgeRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("agent: %s: %w", filepath.Join(dir, edgeFile), err)
	}
	return r.config(dataDir), nil
}

// CurrentRelease returns the release applied in the state directory dir
// and its manifest; nil and no error when none has been applied.
func CurrentRelease(dir string) (*Current, *bundle.Manifest, error) {
	cur, err := ReadCurrent(dir)
	if err != nil || cur == nil {
		return nil, nil, err
	}
	a := &Agent{opts: Options{Dir: dir}}
	m, err := a.releaseManifest(cur)
	if err != nil {
		return nil, nil, err
	}
	return cur, m, nil
}

// Diff is how one release's files differ from another's.
type Diff struct {
	Added, Removed, Changed []string
	Unchanged               int
}

// DiffManifests compares the files of two manifests by path and SHA-256.
func DiffManifests(from, to *bundle.Manifest) Diff {
	var d Diff
	old := map[string]string{}
	for _, f := range from.Files {
		old[f.Path] = f.SHA256
	}
	for _, f := range to.Files {
		sum, ok := old[f.Path]
		switch {
		case !ok:
			d.Added = append(d.Added, f.Path)
		case sum != f.SHA256:
			d.Changed = append(d.Changed, f.Path)
		default:
			d.Unchanged++
		}
		delete(old, f.Path)
	}
	for p := range old {
		d.Removed = append(d.Removed, p)
	}
	slices.Sort(d.Removed)
	return d
}
