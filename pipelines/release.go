package pipelines

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/spec"
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

// ReleaseFile is a file a release carries without reading it.
type ReleaseFile struct {
	// Path is relative to the release directory, with forward slashes.
	Path string
	Size int64
}

// Release directories.
const (
	releasePipelines = "pipelines"
	releaseML        = "ml"
)

// LoadRelease reads the release unpacked into dir: its pipelines
// (pipelines/*.yaml), checked, with their variables interpolated from env.
// Errors name files relative to dir. Name and Version are the caller's to
// set (they come from the bundle's manifest).
func LoadRelease(dir string, env LookupEnv) (*Release, spec.Errors) {
	if env == nil {
		env = os.LookupEnv
	}
	r := &Release{Dir: dir}
	var errs spec.Errors
	files, es := releaseFiles(dir, releasePipelines, true)
	errs = append(errs, es...)
	for _, rel := range files {
		data, err := spec.ReadConfigFile(filepath.Join(dir, rel), spec.MaxPipelineBytes)
		if err != nil {
			errs = append(errs, spec.Errorf(spec.Pos{File: rel}, "%v", unwrapPathErr(err)))
			continue
		}
		ds, es := Parse(rel, data, env)
		for _, d := range ds {
			d.Dir = filepath.Join(dir, filepath.Dir(rel))
			d.Release = r
		}
		r.Defs = append(r.Defs, ds...)
		errs = append(errs, es...)
	}
	if len(files) == 0 && len(es) == 0 {
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
	errs.Sort()
	return r, errs
}

// releaseFiles lists the YAML files (or, with yamlOnly false, every
// regular file) of one directory of a release, by path relative to the
// release directory, sorted. A missing directory holds nothing.
func releaseFiles(dir, sub string, yamlOnly bool) ([]string, spec.Errors) {
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
		if yamlOnly && !strings.HasSuffix(e.Name(), ".yaml") && !strings.HasSuffix(e.Name(), ".yml") {
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
