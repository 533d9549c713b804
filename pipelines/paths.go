package pipelines

import (
	"path/filepath"

	"github.com/sluice-edge/sluice/engine/spec"
)

// fileUse is a path a file source reads or a file sink writes.
type fileUse struct {
	def  *Def
	comp *ComponentDef
	path string // absolute and clean; a glob for sources
}

// checkPaths finds file sinks that would write one file together, and file
// sinks that would write a file a file source reads (each run would read
// its own output). Paths are compared after resolving them against their
// pipeline files, across every pipeline loaded together.
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
				u := fileUse{def: d, comp: c, path: filepath.Clean(p)}
				if c.Kind == spec.KindSink {
					sinks = append(sinks, u)
				} else {
					sources = append(sources, u)
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
			}
		}
	}
	return errs
}
