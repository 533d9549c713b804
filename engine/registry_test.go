package engine_test

import (
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

func nopSource(*spec.Config, engine.BuildContext) (engine.Source, error) { return nil, nil }

func nopSink(*spec.Config, *engine.Schema, engine.BuildContext) (engine.Sink, error) {
	return nil, nil
}

// TestRegisterChecks checks that Register applies the one check to every
// kind, refuses duplicates with an error, and registers nothing it refuses.
func TestRegisterChecks(t *testing.T) {
	field := func(name string) []spec.Field { return []spec.Field{{Name: name, Type: spec.String, Optional: true}} }
	tests := []struct {
		name string
		c    *engine.Component
		want string // "" when the component registers
	}{
		{"source", &engine.Component{Spec: spec.Spec{Name: "regtest-src", Kind: spec.KindSource}, Source: nopSource}, ""},
		{"sink", &engine.Component{Spec: spec.Spec{Name: "regtest-sink", Kind: spec.KindSink, Fields: field("path")}, Sink: nopSink}, ""},
		{"nil", nil, "nil component"},
		{"no name", &engine.Component{Spec: spec.Spec{Kind: spec.KindSource}, Source: nopSource}, "no name"},
		{"no kind", &engine.Component{Spec: spec.Spec{Name: "regtest-nokind"}, Source: nopSource}, "is not one of"},
		{"unknown kind", &engine.Component{Spec: spec.Spec{Name: "regtest-kind", Kind: "gadget"}, Source: nopSource}, "unknown kind"},
		{"no factory", &engine.Component{Spec: spec.Spec{Name: "regtest-nofactory", Kind: spec.KindSink}}, "has no factory"},
		{"wrong factory", &engine.Component{Spec: spec.Spec{Name: "regtest-wrong", Kind: spec.KindStep}, Source: nopSource}, "has a source factory"},
		{"reserved type", &engine.Component{Spec: spec.Spec{Name: "regtest-type", Kind: spec.KindSink, Fields: field("type")}, Sink: nopSink}, "reserved"},
		{"reserved input", &engine.Component{Spec: spec.Spec{Name: "regtest-input", Kind: spec.KindSink, Fields: field("input")}, Sink: nopSink}, "reserved"},
		{"reserved inputs", &engine.Component{Spec: spec.Spec{Name: "regtest-inputs", Kind: spec.KindSource, Fields: field("inputs")}, Source: nopSource}, "reserved"},
		{"bad example", &engine.Component{Spec: spec.Spec{Name: "regtest-example", Kind: spec.KindSource, Example: "a: [b"}, Source: nopSource}, "example"},
		{"duplicate", &engine.Component{Spec: spec.Spec{Name: "regtest-src", Kind: spec.KindSource}, Source: nopSource}, "registered twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before *engine.Component
			if tt.c != nil {
				before, _ = engine.Lookup(tt.c.Spec.Kind, tt.c.Spec.Name)
			}
			err := engine.Register(tt.c)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				if got, ok := engine.Lookup(tt.c.Spec.Kind, tt.c.Spec.Name); !ok || got != tt.c {
					t.Fatalf("Lookup after Register: %v %v", got, ok)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Register: %v, want an error with %q", err, tt.want)
			}
			if tt.c != nil {
				if got, _ := engine.Lookup(tt.c.Spec.Kind, tt.c.Spec.Name); got != before {
					t.Fatalf("a refused component replaced %v with %v", before, got)
				}
			}
		})
	}
}

// TestRegisterKindFunctions checks that the init-time registration
// functions use the same check and panic on what Register refuses.
func TestRegisterKindFunctions(t *testing.T) {
	engine.RegisterSource(spec.Spec{Name: "regtest-kindfn"}, nopSource)
	if c, ok := engine.Lookup(spec.KindSource, "regtest-kindfn"); !ok || c.Spec.Kind != spec.KindSource {
		t.Fatalf("RegisterSource did not register a source: %v %v", c, ok)
	}
	tests := []struct {
		name string
		reg  func()
		want string
	}{
		{"duplicate source", func() { engine.RegisterSource(spec.Spec{Name: "regtest-kindfn"}, nopSource) }, "registered twice"},
		{"sink with a type field", func() {
			engine.RegisterSink(spec.Spec{Name: "regtest-kindfn-type", Fields: []spec.Field{{Name: "type", Type: spec.String}}}, nopSink)
		}, "reserved"},
		{"step without factory", func() { engine.RegisterOperator(spec.Spec{Name: "regtest-kindfn-nil"}, nil) }, "has no factory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.want) {
					t.Fatalf("panic %v, want one with %q", r, tt.want)
				}
			}()
			tt.reg()
		})
	}
}
