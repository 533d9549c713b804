package spec

// WithDefaults returns a copy of c in which the fields whose values hold
// one of the positions in at (a field's value starts at or before the
// position and the next field's after it) are back to their defaults, or
// absent when they have none. It lets a builder that found errors in a
// configuration build it once more, without the values in error, to learn
// what it would produce (its output schema) and check what reads it.
func (c *Config) WithDefaults(at []Pos) *Config {
	if c == nil {
		return nil
	}
	reset := map[string]bool{}
	for _, p := range at {
		if p.File != c.file {
			continue
		}
		best, bestPos := "", Pos{}
		for name, fp := range c.pos {
			if before(fp, p) && (best == "" || before(bestPos, fp)) {
				best, bestPos = name, fp
			}
		}
		if best != "" {
			reset[best] = true
		}
	}
	out := &Config{file: c.file, node: c.node, at: c.at, fields: c.fields,
		values: make(map[string]any, len(c.values)), pos: make(map[string]Pos, len(c.pos)), set: make(map[string]bool, len(c.set))}
	for k, v := range c.values {
		out.values[k] = v
	}
	for k, v := range c.pos {
		out.pos[k] = v
	}
	for k, v := range c.set {
		out.set[k] = v
	}
	for name := range reset {
		delete(out.values, name)
		delete(out.set, name)
		if f, ok := findField(c.fields, name); ok && f.Default != nil {
			out.values[name] = normalizeDefault(f)
		}
	}
	return out
}

// before reports whether a is at or before b.
func before(a, b Pos) bool {
	return a.Line < b.Line || a.Line == b.Line && a.Col <= b.Col
}
