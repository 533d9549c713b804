package devsim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Probe connects to the broker once as the simulator's devices would (the
// same URLs, credentials and TLS) and disconnects. It fails when no
// connection is up within wait, with the reason of the last attempt (such
// as "connection refused" or a refused CONNECT), so that a simulator
// pointed at a wrong address says so instead of retrying in silence.
func (s *Sim) Probe(ctx context.Context, wait time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	c, err := dial(pctx, &s.cfg, s.cfg.ClientID+"-probe", nil, false, nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		why := err
		if ce, ok := errors.AsType[*connectError](err); ok {
			why = errors.New("no answer")
			if ce.last != nil {
				why = ce.last
			}
		}
		return fmt.Errorf("cannot connect to the MQTT broker %s within %s: %v", strings.Join(s.cfg.URLs, ", "), wait, why)
	}
	c.close()
	return nil
}
