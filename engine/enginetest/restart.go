package enginetest

import (
	"bytes"
	"testing"

	"github.com/sluice-edge/sluice/engine"
)

// StatefulOperator is a step whose state a snapshot carries to a fresh
// step of the same configuration.
type StatefulOperator interface {
	engine.Stateful
	Close() error
}

// Restart hands the state of op over to a fresh step built by build, as a
// restart between two batches does, and returns the fresh step. It checks
// that two snapshots of op are equal bytes, that the fresh step accepts
// the state and that it snapshots to the same bytes again; cut names the
// point of the restart in the failure messages.
func Restart[O StatefulOperator](t testing.TB, op O, build func() O, cut int) O {
	t.Helper()
	st, err := op.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := op.Snapshot(); err != nil || !bytes.Equal(again.Data, st.Data) {
		t.Fatalf("cut %d: a second snapshot differs (err %v)", cut, err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	op = build()
	if err := op.Restore(st); err != nil {
		t.Fatalf("cut %d: Restore: %v", cut, err)
	}
	if re, err := op.Snapshot(); err != nil || !bytes.Equal(re.Data, st.Data) {
		t.Fatalf("cut %d: the restored step snapshots to other bytes (err %v)", cut, err)
	}
	return op
}
