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
// downlink. The commands' origin is rule:<pipeline>.<sink>.
func (s *Sink) writeControlled(ctx context.Context, b engine.Batch) error {
	defer b.Release()
	rec := b.Rec
	for r := range int(rec.NumRows()) {
		c := command.Command{Product: s.product, Service: s.service, Origin: s.ruleOrigin, Timeout: s.timeout}
		if s.productCol >= 0 {
			c.Product = stringAt(rec.Column(s.productCol), r)
		}
		c.Asset = stringAt(rec.Column(s.deviceCol), r)
		if c.Product == "" || c.Asset == "" {
			s.skipped.Add(1)
			continue
		}
		c.Inputs = make(map[string]any, len(s.inputs))
		for _, in := range s.inputs {
			if v, ok := valueAt(rec.Column(in.col), r); ok {
				c.Inputs[in.name] = v
			}
		}
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
	return nil
}
