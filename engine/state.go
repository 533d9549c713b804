package engine

import "fmt"

// State is the serialized state of a stateful operator: what it holds
// between batches (open windows, watermarks, alert states with their
// pending hold timers). Kind names the operator type that wrote it and
// Version the format of Data, so that a reader refuses state it does not
// understand instead of misreading it.
type State struct {
	Kind    string
	Version int
	Data    []byte
}

// Stateful is implemented by operators whose state can move to another
// instance built from the same configuration for the same input schema:
// across a hot switch of a release, and (later) to and from checkpoints.
//
// Snapshot is called once the operator's input has drained and before
// Flush or Close; the operator must not be used afterwards except to be
// closed without flushing. Restore is called on a new instance before its
// first Process. An error from Restore leaves the instance fresh (as
// built) and says why the state was refused.
type Stateful interface {
	Snapshot() (*State, error)
	Restore(*State) error
}

// CheckState refuses a state that is not of the given kind and version.
func CheckState(s *State, kind string, version int) error {
	switch {
	case s == nil:
		return fmt.Errorf("no state")
	case s.Kind != kind:
		return fmt.Errorf("state of a %q step, not %q", s.Kind, kind)
	case s.Version != version:
		return fmt.Errorf("%s state version %d, this engine reads version %d", kind, s.Version, version)
	}
	return nil
}

// Reconciler is implemented by stateful operators that can continue the
// state of an operator of their kind built from another configuration: an
// alert step whose rules changed continues the alerts and pending
// conditions of the rules that did not change.
type Reconciler interface {
	Stateful
	// Continues reports whether the operator can continue the state of
	// prev, built from another configuration (same kind, input schema and
	// key). It reads only the configuration of both: prev may be running.
	Continues(prev Operator) bool
	// RestoreChanged is Restore for a state written by an operator that
	// Continues accepted, after its Retire for this one (see Retirer): it
	// keeps what this operator continues unchanged, drops the rest, and
	// says what it kept ("3 of 4 rules"). An error leaves the operator
	// fresh, as for Restore.
	RestoreChanged(*State) (kept string, err error)
}

// Retirer is implemented by operators whose output announces something
// that lasts until a later record ends it — a raised alert, ended by its
// cleared record — and that end it themselves when a release switch takes
// them away, so that no consumer is left with a fact the engine no longer
// knows.
type Retirer interface {
	// Retire is called in a graph stopped by a release switch once the
	// operator's input has drained (see Graph.Retire), before it is
	// flushed and closed or handed over. next is the operator that
	// continues its state (a Reconciler whose Continues accepted it,
	// built from the configuration of the one that will run), or nil when
	// none does. Retire emits the records that end what next will not
	// continue, forgets it, and returns how many records it emitted.
	Retire(next Operator, emit PortEmit) (int, error)
}
