package engine

import (
	"errors"
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

// Kinds are the component kinds, in pipeline order.
var Kinds = []spec.Kind{spec.KindSource, spec.KindStep, spec.KindSink}

var (
	regMu    sync.RWMutex
	registry = map[spec.Kind]map[string]*Component{}
)

// Check reports why c cannot be registered: its spec fails spec.Check
// (which also refuses fields named type, input or inputs), its kind is not
// one of Kinds, or it has not exactly the one factory of its kind. It is
// the one check of every component, whatever its kind.
func (c *Component) Check() error {
	var errs []error
	if !slices.Contains(Kinds, c.Spec.Kind) {
		errs = append(errs, fmt.Errorf("component %q: kind %q is not one of %v", c.Spec.Name, c.Spec.Kind, Kinds))
	}
	if err := c.Spec.Check(); err != nil {
		errs = append(errs, err)
	}
	factories := map[spec.Kind]bool{
		spec.KindSource: c.Source != nil,
		spec.KindStep:   c.Operator != nil,
		spec.KindSink:   c.Sink != nil,
	}
	for _, k := range Kinds {
		switch set := factories[k]; {
		case k == c.Spec.Kind && !set:
			errs = append(errs, fmt.Errorf("%s %q has no factory", k, c.Spec.Name))
		case k != c.Spec.Kind && set:
			errs = append(errs, fmt.Errorf("%s %q has a %s factory", c.Spec.Kind, c.Spec.Name, k))
		}
	}
	return errors.Join(errs...)
}

// Register adds a component to the registry after checking it (see
// Component.Check). It returns an error, and registers nothing, when the
// check fails or a component of the same kind and name is registered.
func Register(c *Component) error {
	if c == nil {
		return errors.New("engine: register: nil component")
	}
	if err := c.Check(); err != nil {
		return fmt.Errorf("engine: register %s %q: %w", c.Spec.Kind, c.Spec.Name, err)
	}
	regMu.Lock()
	defer regMu.Unlock()
	m := registry[c.Spec.Kind]
	if m == nil {
		m = map[string]*Component{}
		registry[c.Spec.Kind] = m
	}
	if _, dup := m[c.Spec.Name]; dup {
		return fmt.Errorf("engine: register %s %q: registered twice", c.Spec.Kind, c.Spec.Name)
	}
	m[c.Spec.Name] = c
	return nil
}

// mustRegister registers c from an init function. A component that fails
// Register is a programmer error (a duplicate name or an invalid spec is
// in the binary, whatever the input), so it panics and the program never
// starts; code registering at run time calls Register.
func mustRegister(c *Component) {
	if err := Register(c); err != nil {
		panic(err.Error())
	}
}

// RegisterSource registers a source type (the spec's kind is set to
// source). It is meant for init functions and panics when Register fails:
// a duplicate name or a spec that fails Component.Check.
func RegisterSource(s spec.Spec, f SourceFactory) {
	s.Kind = spec.KindSource
	mustRegister(&Component{Spec: s, Source: f})
}

// RegisterOperator registers a step type (the spec's kind is set to step).
// It is meant for init functions and panics when Register fails: a
// duplicate name or a spec that fails Component.Check.
func RegisterOperator(s spec.Spec, f OperatorFactory) {
	s.Kind = spec.KindStep
	mustRegister(&Component{Spec: s, Operator: f})
}

// RegisterSink registers a sink type (the spec's kind is set to sink). It
// is meant for init functions and panics when Register fails: a duplicate
// name or a spec that fails Component.Check.
func RegisterSink(s spec.Spec, f SinkFactory) {
	s.Kind = spec.KindSink
	mustRegister(&Component{Spec: s, Sink: f})
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
