package mqtt

import (
	"context"
	"errors"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// writeControlled hands one command per row to the edge's command arbiter
// (engine.BuildContext.Commands, set when the edge configuration has a
// control section) instead of sending it: the arbiter decides on it like
// on every other command (docs/control.md) and sends it over its own
// downlink. The commands' origin is rule:<pipeline>.<sink>. A sink with a
// generic JSON command_topic (declared in the control section, which
// routes its devices' commands to it) submits one command per point, as
// it would send them itself; so does any sink for a device the arbiter
// reaches one point at a time (control.OnePointer).
func (s *Sink) writeControlled(ctx context.Context, b engine.Batch) error {
	defer b.Release()
	rec := b.Rec
	op, _ := s.control.(control.OnePointer)
	for r := range int(rec.NumRows()) {
		c, ok := s.rowCommand(rec, r, s.ruleOrigin)
		if !ok {
			continue
		}
		cmds := []command.Command{c}
		if s.json != nil || op != nil && op.OnePoint(c.Product, c.Asset) {
			cmds = s.perPoint(c)
		}
		for _, c := range cmds {
			got, err := s.control.Submit(ctx, c)
			switch {
			case err == nil:
				s.sent.Add(1)
			case errors.Is(err, control.ErrClosed) || ctx.Err() != nil:
				return err
			default:
				// Rejected, expired or malformed: the arbiter recorded and
				// audited it (a malformed one excepted); the run goes on.
				s.failed.Add(1)
				s.log.Warn("mqtt sink: command refused by the arbiter", "id", got.ID, "device", c.Asset, "err", err)
			}
		}
	}
	return nil
}
