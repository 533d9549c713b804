package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluice-edge/sluice/engine"
)

// The two-phase commit of a held sink (Options.Held): *Sink implements
// engine.Committer.
var _ engine.Committer = (*Sink)(nil)

// ErrNotHeld is returned by Prepare, Commit and Rollback of a sink built
// without Options.Held (a pipeline that takes no checkpoints): it does not
// hold its output back, so it has no mark to give; its rows leave as soon
// as they are stored (at least once).
var ErrNotHeld = errors.New("forward: the sink does not hold its output back (built without checkpoints)")

// ErrMark is returned (wrapped) by Commit and Rollback for a mark this
// sink did not make: undecodable, or of another edge or stream.
var ErrMark = errors.New("forward: not a mark of this sink")

// mark is what a held sink's mark encodes: the identity of its buffer's
// rows and the sequence of the last row the mark covers.
type mark struct {
	Edge   string `json:"edge"`
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
}

// Held reports whether the sink holds its output back until Commit
// (Options.Held). A sink that does not answers ErrNotHeld to Prepare.
func (s *Sink) Held() bool { return s.opts.Held }

// Prepare makes every row written so far durable, whatever the buffer's
// fsync policy, and returns the mark of the last of them: the buffer's
// identity (edge, stream) and sequence. Rows after the mark stay in the
// buffer, unread by the forwarder, until Commit. A sink that is not held
// returns ErrNotHeld.
func (s *Sink) Prepare(context.Context) ([]byte, error) {
	if !s.opts.Held {
		return nil, ErrNotHeld
	}
	last, err := s.buf.Sync()
	if err != nil {
		return nil, fmt.Errorf("forward: prepare: %w", err)
	}
	edge, stream := s.buf.Identity()
	return json.Marshal(mark{Edge: edge, Stream: stream, Seq: last})
}

// Commit lets the forwarder publish the rows up to m, once the checkpoint
// holding m is durable.
func (s *Sink) Commit(m []byte) error {
	seq, err := s.decodeMark(m)
	if err != nil {
		return err
	}
	if err := s.buf.Commit(seq); err != nil {
		return fmt.Errorf("forward: commit: %w", err)
	}
	s.kick()
	return nil
}

// Rollback forgets the rows written after m (an epoch that never
// completed), before the first Write of a run that recovers from the
// checkpoint holding m: the run writes them again under the same
// sequences, so their message IDs stay the same.
func (s *Sink) Rollback(m []byte) error {
	seq, err := s.decodeMark(m)
	if err != nil {
		return err
	}
	if err := s.buf.Rollback(seq); err != nil {
		return fmt.Errorf("forward: roll back: %w", err)
	}
	return nil
}

// decodeMark returns the sequence of a mark of this sink.
func (s *Sink) decodeMark(m []byte) (uint64, error) {
	if !s.opts.Held {
		return 0, ErrNotHeld
	}
	var k mark
	if err := json.Unmarshal(m, &k); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMark, err)
	}
	edge, stream := s.buf.Identity()
	if k.Edge != edge || k.Stream != stream {
		return 0, fmt.Errorf("%w: the mark is of %s/%s, the buffer holds %s/%s", ErrMark, k.Edge, k.Stream, edge, stream)
	}
	return k.Seq, nil
}
