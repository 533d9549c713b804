package pipelines

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/alert"
)

// Release is a set of pipelines run together, with what they share from
// the release they came from. A release built from files named on the
// command line has only Defs.
type Release struct {
	// Name and Version identify a bundle release (empty and zero for
	// pipelines given on the command line).
	Name    string
	Version int64
	// Dir is the directory the release was unpacked into ("" for
	// command-line pipelines).
	Dir  string
	Defs []*Def
	// Catalog holds the thing models and assets of models/ (nil when the
	// release has none).
	Catalog *assets.Catalog
	// RuleSets are the rule sets of rules/ by name.
	RuleSets map[string]*engine.RuleSet
	// Settings are the edge settings of config/ (nil outside a release).
	Settings *Settings
	// ML lists the files under ml/, by path relative to Dir, sorted.
	ML []ReleaseFile
}

// catalog returns the release's catalog as the components receive it: nil
// (not a nil *assets.Catalog) when there is none.
func (r *Release) catalog() engine.Catalog {
	if r == nil || r.Catalog == nil {
		return nil
	}
	return r.Catalog
}

// dir returns the directory of the release, "" outside a release.
func (r *Release) dir() string {
	if r == nil {
		return ""
	}
	return r.Dir
}

// ruleSets returns the release's rule sets: none outside a release, an
// empty map in a release without rules/.
func (r *Release) ruleSets() map[string]*engine.RuleSet {
	if r == nil {
		return nil
	}
	if r.RuleSets == nil {
		return map[string]*engine.RuleSet{}
	}
	return r.RuleSets
}

// label names the release as the rule set versions derived from it do:
// "<name> v<version>", or "" outside a release or before it has a name.
func (r *Release) label() string {
	if r == nil || r.Name == "" {
		return ""
	}
	return fmt.Sprintf("%s v%d", r.Name, r.Version)
}

// ReleaseFile is a file a release carries without reading it.
type ReleaseFile struct {
	// Path is relative to the release directory, with forward slashes.
	Path string
	Size int64
}

// Release directories.
const (
	releaseModels    = "models"
	releaseRules     = "rules"
	releaseConfig    = "config"
	releasePipelines = "pipelines"
	releaseML        = "ml"
)

// releaseData is one file of a release read into memory; rel is its path
// relative to the release directory.
type releaseData struct {
	rel  string
	data []byte
}

// LoadRelease reads and checks the release unpacked into dir:
//
//   - models/*.yaml, *.yml, *.json: thing models and assets, merged into
//     one catalog (Catalog); an id declared twice is an error naming both
//     places;
//   - rules/*.yaml, *.yml: rule sets (RuleSets), by file base name;
//   - config/*.yaml, *.yml: edge settings (Settings), whose vars are
//     interpolated in the pipelines before env;
//   - pipelines/*.yaml, *.yml: the pipelines (Defs), built without running
//     (see Options.DryRun) against the catalog and rule sets, so that a
//     rule reading a point its model lacks is reported where the rule is;
//   - ml/: listed (ML); an infer step's model file is read by the step
//     when the pipelines are built (resolved inside dir, see
//     engine.BuildContext.ReleaseDir).
//
// Every problem is returned, located by file:line:col with the file
// relative to dir. Name and Version are the caller's to set (they come
// from the bundle's manifest). The release is returned also when there
// are errors, with what could be read.
func LoadRelease(dir string, env LookupEnv) (*Release, spec.Errors) {
	if env == nil {
		env = os.LookupEnv
	}
	r := &Release{Dir: dir, RuleSets: map[string]*engine.RuleSet{}}
	var errs spec.Errors
	read := func(sub string, limit int64, exts ...string) []releaseData {
		files, es := releaseFiles(dir, sub, exts)
		errs = append(errs, es...)
		var out []releaseData
		for _, rel := range files {
			data, err := spec.ReadConfigFile(filepath.Join(dir, rel), limit)
			if err != nil {
				errs = append(errs, spec.Errorf(spec.Pos{File: rel}, "%v", unwrapPathErr(err)))
				continue
			}
			out = append(out, releaseData{rel: rel, data: data})
		}
		return out
	}

	// Models and assets.
	if models := read(releaseModels, assets.MaxFileBytes, slices.Concat(bundle.YAMLExts, []string{".json"})...); len(models) > 0 {
		files := make([]assets.File, len(models))
		for i, m := range models {
			files[i] = assets.File{Name: m.rel, Data: m.data}
		}
		c, err := assets.ParseFiles(files...)
		if err != nil {
			errs = append(errs, spec.Collect(spec.Pos{File: releaseModels}, err)...)
		}
		r.Catalog = c
	}

	// Rule sets.
	for _, f := range read(releaseRules, spec.MaxPipelineBytes, bundle.YAMLExts...) {
		n, es := decodeOne(f.rel, f.data)
		if len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		rs, es := alert.ParseRuleSet(f.rel, n)
		errs = append(errs, es...)
		if prev, dup := r.RuleSets[rs.Name]; dup {
			errs = append(errs, spec.Errorf(spec.Pos{File: f.rel, Line: 1, Col: 1}, "rule set %q is also defined by %s", rs.Name, prev.File))
			continue
		}
		r.RuleSets[rs.Name] = rs
	}

	// Settings.
	settings, es := parseSettings(read(releaseConfig, spec.MaxPipelineBytes, bundle.YAMLExts...), env)
	errs = append(errs, es...)
	r.Settings = settings
	lookup := settings.lookup(env)

	// Pipelines.
	pipes := read(releasePipelines, spec.MaxPipelineBytes, bundle.YAMLExts...)
	for _, f := range pipes {
		ds, es := Parse(f.rel, f.data, lookup)
		for _, d := range ds {
			d.Dir = filepath.Join(dir, filepath.Dir(f.rel))
			d.Release = r
		}
		r.Defs = append(r.Defs, ds...)
		errs = append(errs, es...)
	}
	if len(pipes) == 0 {
		errs = append(errs, spec.Errorf(spec.Pos{File: releasePipelines}, "the release holds no pipelines"))
	}
	seen := map[string]*Def{}
	for _, d := range r.Defs {
		if prev, dup := seen[d.Name]; dup {
			errs = append(errs, spec.Errorf(d.Pos, "pipeline %q is also defined at %s", d.Name, prev.Pos))
			continue
		}
		seen[d.Name] = d
	}

	ml, es := listFiles(dir, releaseML)
	errs = append(errs, es...)
	r.ML = ml

	// Build every pipeline without running it, against the models and
	// rule sets, when those could be read: their errors would only
	// repeat as errors of the pipelines.
	if len(errs) == 0 {
		ps, es := BuildAll(r.Defs, Options{DryRun: true, Log: slog.New(slog.DiscardHandler)})
		for _, p := range ps {
			p.Close()
		}
		errs = append(errs, es...)
	}
	errs.Sort()
	return r, errs
}

// releaseFiles lists the regular files of one directory of a release
// whose names end in one of exts, by path relative to the release
// directory, sorted. A missing directory holds nothing.
func releaseFiles(dir, sub string, exts []string) ([]string, spec.Errors) {
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, spec.Errors{spec.Errorf(spec.Pos{File: sub}, "%v", unwrapPathErr(err))}
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if !slices.ContainsFunc(exts, func(ext string) bool { return strings.HasSuffix(e.Name(), ext) }) {
			continue
		}
		out = append(out, filepath.Join(sub, e.Name()))
	}
	slices.Sort(out)
	return out, nil
}

// listFiles lists every regular file under dir/sub, recursively, with its
// size.
func listFiles(dir, sub string) ([]ReleaseFile, spec.Errors) {
	root := filepath.Join(dir, sub)
	if _, err := os.Lstat(root); os.IsNotExist(err) {
		return nil, nil
	}
	var out []ReleaseFile
	var errs spec.Errors
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, ReleaseFile{Path: filepath.ToSlash(rel), Size: info.Size()})
		return nil
	})
	if err != nil {
		errs = append(errs, spec.Errorf(spec.Pos{File: sub}, "%v", unwrapPathErr(err)))
	}
	return out, errs
}
