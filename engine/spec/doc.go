// Package spec declares component configuration once and derives everything
// else from that declaration: validation of YAML nodes with file:line:col
// errors, typed access for constructors, JSON Schema for editors and the
// Markdown pipeline reference.
//
// A component (source, step or sink) declares a Spec: its name, a summary
// and its Fields. Each Field has a name, a type, an optional default, a
// description and an example. Parse checks a YAML mapping against the
// fields — unknown keys, wrong types, missing required fields, values
// outside an enum — and returns a Config that constructors read with typed
// getters. Constructors report semantic problems (a bad expression, an
// unknown column) with Config.Errorf so they carry the same location.
package spec
