package engine

import (
	"context"
	"errors"
	"time"
)

// Checkpoint is one consistent cut through a running pipeline: the state
// of every stateful step after it had processed exactly the input before
// the sources' positions, and the mark of every committing sink's output
// at the same point. Restoring the states, resuming every source at its
// position and rolling every sink back to its mark gives a pipeline that
// continues as if it had never stopped.
type Checkpoint struct {
	// Epoch numbers the checkpoints of a pipeline, from 0 (the one taken
	// before its first run processed anything) up.
	Epoch uint64
	// Time is the wall-clock time the checkpoint was taken.
	Time time.Time
	// Sources holds the position of every replayable source by component
	// name (see Replayable).
	Sources map[string][]byte
	// States holds the state of every stateful step by component name
	// (see Stateful).
	States map[string]*State
	// Sinks holds the mark of every committing sink by component name (see
	// Committer).
	Sinks map[string][]byte
}

// ErrNoValidCheckpoint is wrapped by the error of CheckpointStore.Load
// when checkpoints exist but none of them is valid: a graph then starts
// with empty state. Any other error of Load stops the start.
var ErrNoValidCheckpoint = errors.New("checkpoint: no valid checkpoint")

// CheckpointStore keeps the checkpoints of one pipeline durable.
type CheckpointStore interface {
	// Save makes c durable and the newest checkpoint, atomically: after a
	// crash at any moment Load returns either c or the checkpoint before
	// it, whole.
	Save(c *Checkpoint) error
	// Load returns the newest valid checkpoint, or nil and no error when
	// there is none. A damaged newer checkpoint is reported (logged and
	// counted) and passed over for the one before it; when checkpoints
	// exist but none is valid the error wraps ErrNoValidCheckpoint.
	Load() (*Checkpoint, error)
}

// Replayable is implemented by sources that can produce their input again
// from a position: a file from an offset, a simulator from a row count, a
// live source from the ingest log that keeps what it accepted. A pipeline
// that checkpoints needs every source to be replayable.
type Replayable interface {
	// Position returns the position just after the last record the source
	// has handed to emit: the source puts the position after a record in
	// place before it calls emit with it. The engine calls Position before
	// Run (where Run starts) and on the source's goroutine right after every
	// emit that returned nil.
	Position() []byte
	// ResumeAt is called before Run when the pipeline recovers from a
	// checkpoint: Run produces the source's input from pos on, as it
	// produced it after pos the first time.
	ResumeAt(pos []byte) error
	// Committed is called, from another goroutine, once a checkpoint
	// holding pos is durable: the input before pos will never be asked
	// for again and may be forgotten.
	Committed(pos []byte)
}

// Syncer is implemented by replayable sources whose Position may run
// ahead of what their log has made durable (an ingest log that emits a
// record before the fsync covering it; see engine/ingest). The engine calls
// Sync after it has read the source's position for a checkpoint and before
// it saves the checkpoint; an error fails the checkpoint like a failed
// save. A checkpoint must never name a position the log could lose: after
// a power loss the recovered operators' state would include input the
// log can no longer replay, and the input after it would be replayed from
// a position the log does not reach.
type Syncer interface {
	// Sync makes the input up to the source's position durable. It is
	// called from another goroutine than Run's.
	Sync() error
}

// Committer is implemented by sinks that hold their output back until the
// checkpoint covering it is durable (the two-phase commit of a
// checkpointing pipeline): output written after the newest checkpoint
// never leaves the edge before that checkpoint exists, so a recovery that
// replays the input after the checkpoint produces it again without any of
// it having been delivered twice.
type Committer interface {
	// Prepare is called once every batch before a checkpoint's barrier has
	// been written: it makes them durable and returns the mark of the
	// sink's output up to there. It is also called before the first Write
	// of a pipeline that has no checkpoint yet.
	Prepare(ctx context.Context) (mark []byte, err error)
	// Commit is called once the checkpoint holding mark is durable: the
	// output up to mark may leave.
	Commit(mark []byte) error
	// Rollback is called before the first Write of a run that recovers
	// from a checkpoint holding mark: output written after mark belongs to
	// an epoch that never completed and is forgotten.
	Rollback(mark []byte) error
}
