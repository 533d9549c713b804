package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-edge/sluice/engine/spec"
)

// Component is a registered component: its declaration and its factory
// (exactly one of the three factories is set, matching Spec.Kind).
type Component struct {
	Spec     spec.Spec
	Source   SourceFactory
	Operator OperatorFactory
	Sink     SinkFactory
}

var (
	regMu    sync.RWMutex
	registry = map[spec.Kind]map[string]*Component{}
)

func register(c *Component) {
	regMu.Lock()
	defer regMu.Unlock()
	m := registry[c.Spec.Kind]
	if m == nil {
		m = map[string]*Component{}
		registry[c.Spec.Kind] = m
	}
	if _, dup := m[c.Spec.Name]; dup {
		panic(fmt.Sprintf("engine: %s %q registered twice", c.Spec.Kind, c.Spec.Name))
	}
	m[c.Spec.Name] = c
}

// RegisterSource registers a source type. It is meant for init functions and
// panics on a duplicate name.
func RegisterSource(s spec.Spec, f SourceFactory) {
	s.Kind = spec.KindSource
	register(&Component{Spec: s, Source: f})
}

// RegisterOperator registers a step type. It is meant for init functions and
// panics on a duplicate name.
func RegisterOperator(s spec.Spec, f OperatorFactory) {
	s.Kind = spec.KindStep
	register(&Component{Spec: s, Operator: f})
}

// RegisterSink registers a sink type. It is meant for init functions and
// panics on a duplicate name.
func RegisterSink(s spec.Spec, f SinkFactory) {
	s.Kind = spec.KindSink
	register(&Component{Spec: s, Sink: f})
}

// Lookup returns the registered component of that kind and type name.
func Lookup(kind spec.Kind, name string) (*Component, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	c, ok := registry[kind][name]
	return c, ok
}

// Names returns the registered type names of a kind, sorted.
func Names(kind spec.Kind) []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry[kind]))
	for n := range registry[kind] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Components returns every registered component of a kind, sorted by name.
func Components(kind spec.Kind) []*Component {
	var out []*Component
	for _, n := range Names(kind) {
		c, _ := Lookup(kind, n)
		out = append(out, c)
	}
	return out
}

// UnknownTypeError describes a type name that is not registered.
func UnknownTypeError(kind spec.Kind, name string) string {
	return fmt.Sprintf("unknown %s type %q (known: %s)", kind, name, strings.Join(Names(kind), ", "))
}
