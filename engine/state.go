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
