package pipelines

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
}
