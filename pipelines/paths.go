package pipelines

import (
	"path/filepath"

	"github.com/sluice-edge/sluice/engine/spec"
)

// realPath returns the clean absolute path p stands for, following symbolic
// links as far as they exist: a file that does not exist yet is named
// through its resolved directory.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		return filepath.Join(dir, filepath.Base(p))
	}
	return filepath.Clean(p)
}

// fileUse is a path a file source reads or a file sink writes.
type fileUse struct {
	def  *Def
	comp *ComponentDef
	path string // absolute and clean; a glob for sources
}

// checkPaths finds file sinks that would write one file together, and file
// sinks that would write a file a file source reads (each run would read
// its own output). Paths are compared after resolving them against their
// pipeline files and following symbolic links, across every pipeline
// loaded together.
func checkPaths(defs []*Def) spec.Errors {
	var sinks, sources []fileUse
	for _, d := range defs {
		for _, group := range [][]*ComponentDef{d.Sources, d.Sinks} {
			for _, c := range group {
				if c.Type != "file" || c.Config == nil || c.Invalid || !c.Config.Has("path") {
					continue
				}
				p := c.Config.String("path")
				if !filepath.IsAbs(p) {
					p = filepath.Join(d.Dir, p)
				}
				p, _ = filepath.Abs(p)
				if c.Kind == spec.KindSink {
					sinks = append(sinks, fileUse{def: d, comp: c, path: realPath(p)})
					continue
				}
				// A source reads every match of its glob (as they are now)
				// and whatever later matches the glob itself.
				sources = append(sources, fileUse{def: d, comp: c, path: filepath.Join(realPath(filepath.Dir(p)), filepath.Base(p))})
				matches, _ := filepath.Glob(p)
				for _, m := range matches {
					sources = append(sources, fileUse{def: d, comp: c, path: realPath(m)})
				}
			}
		}
	}
	var errs spec.Errors
	for i, s := range sinks {
		for _, o := range sinks[:i] {
			if s.path == o.path {
				errs = append(errs, s.comp.Config.Errorf("path", "sink %q writes %s, as sink %q of pipeline %q does (%s): two sinks would interleave or overwrite each other's rows",
					s.comp.Name, s.path, o.comp.Name, o.def.Name, o.comp.Pos))
				break
			}
		}
		for _, src := range sources {
			if ok, _ := filepath.Match(src.path, s.path); ok || src.path == s.path {
				errs = append(errs, s.comp.Config.Errorf("path", "sink %q writes %s, which source %q of pipeline %q reads (%s): the pipeline would read its own output",
					s.comp.Name, s.path, src.comp.Name, src.def.Name, src.comp.Pos))
				break
			}
		}
	}
	return errs
}
