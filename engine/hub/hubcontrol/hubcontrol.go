// Package hubcontrol is the edge's side of commands from the hub
// (docs/format/hub-protocol.md, section 8): Follow reads the edge's
// commands from its durable JetStream consumer and submits each to the
// edge's arbiter, and Records sends the arbiter's command records — of
// every origin — back to the hub through the uplink's durable buffer.
//
// Every message from the hub is hostile: it is decoded strictly
// (protocol.DecodeCommand: size, unknown fields, names, inputs, deadline)
// and then judged by the arbiter like any other command (classes, leases,
// expiry against the command's own deadline, idempotency). The hub's
// command id is the record's id and its idempotency key, so a redelivered
// message is executed once; a message is acknowledged only once the
// arbiter has durably recorded its decision.
package hubcontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
)

// Defaults of Options.
const (
	DefaultAckWait   = 30 * time.Second
	DefaultFetchWait = 5 * time.Second
	retryMin         = time.Second
	retryMax         = 30 * time.Second
	nakDelay         = 5 * time.Second
)

// Options configure Follow.
type Options struct {
	// AckWait is how long the broker waits for the ack of a delivered
	// command before delivering it again (default DefaultAckWait).
	AckWait time.Duration
	// FetchWait bounds one fetch (default DefaultFetchWait).
	FetchWait time.Duration
	// OnRefused, when set, receives the record of a command the edge
	// refused before the arbiter could record it (malformed, for another
	// edge, out of the arbiter's bounds): status rejected, with the
	// reason, so that the hub learns of it.
	OnRefused func(rec command.Command, audit []command.Transition)
	// BeforeAck, when set, is called once the arbiter decided on a
	// command and before its message is acked; returning false leaves
	// the message unacked (tests use it to stop as a crash would).
	BeforeAck func(rec control.Record) bool
	// Log receives what Follow does (default: discarded).
	Log *slog.Logger
}

// Follow submits the commands the hub sends to edge to sub until ctx
// ends; it returns nil then. While the broker or the stream is
// unreachable it retries with backoff (1 s doubling to 30 s); the
// commands wait in the stream meanwhile.
func Follow(ctx context.Context, js jetstream.JetStream, edge string, sub control.Submitter, opts Options) error {
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.FetchWait <= 0 {
		opts.FetchWait = DefaultFetchWait
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	cfg, err := protocol.CommandConsumerConfig(edge, opts.AckWait)
	if err != nil {
		return fmt.Errorf("hub commands: %w", err)
	}
	f := &follower{edge: edge, sub: sub, opts: opts, log: opts.Log.With("edge", edge)}
	wait := retryMin
	logged := false
	for ctx.Err() == nil {
		cons, err := js.CreateOrUpdateConsumer(ctx, protocol.CommandStream, cfg)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !logged {
				f.log.Warn("hub commands: the command stream is not reachable; retrying", "err", err)
				logged = true
			}
			if !engine.Sleep(ctx, wait) {
				break
			}
			wait = min(2*wait, retryMax)
			continue
		}
		if logged {
			f.log.Info("hub commands: following the command stream again")
		}
		logged, wait = false, retryMin
		for ctx.Err() == nil {
			batch, err := cons.Fetch(16, jetstream.FetchMaxWait(opts.FetchWait))
			if err != nil {
				break
			}
			for m := range batch.Messages() {
				f.handle(ctx, m)
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
				f.log.Debug("hub commands: fetch", "err", err)
				break
			}
		}
		if !engine.Sleep(ctx, retryMin) {
			break
		}
	}
	return nil
}

type follower struct {
	edge string
	sub  control.Submitter
	opts Options
	log  *slog.Logger
}

// handle decides on one message: submitted and acked once recorded;
// terminated when it can never be recorded; nak'ed when the arbiter could
// not decide now.
func (f *follower) handle(ctx context.Context, m jetstream.Msg) {
	c, err := protocol.DecodeCommand(m.Data())
	if err == nil && c.Edge != f.edge {
		err = fmt.Errorf("%w: command for edge %q on the subject of %q", protocol.ErrFormat, c.Edge, f.edge)
	}
	if err != nil {
		f.refuse(m, c, err)
		return
	}
	rec, err := f.sub.Submit(ctx, control.Command{
		ID: c.ID, IdempotencyKey: c.ID, Origin: protocol.CommandOrigin, Class: c.Class,
		Product: c.Product, Asset: c.Asset, Service: c.Service, Inputs: c.Inputs,
		Expiry: c.Expiry, Requested: c.Issued,
	})
	switch {
	case err == nil, rec.ID != "" && (errors.Is(err, control.ErrRejected) || errors.Is(err, control.ErrExpired)):
		// Recorded and synced (queued, rejected, expired, or the earlier
		// record of a redelivery). A record with another error may not be
		// on disk (the log could not be synced): delivered again, the
		// command finds its record by its idempotency key if it is.
	case errors.Is(err, control.ErrInvalid):
		f.refuse(m, c, err)
		return
	default:
		f.log.Warn("hub commands: the arbiter could not decide; the command is delivered again", "id", c.ID, "err", err)
		_ = m.NakWithDelay(nakDelay)
		return
	}
	if f.opts.BeforeAck != nil && !f.opts.BeforeAck(rec) {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := m.DoubleAck(actx); err != nil {
		// Delivered again after AckWait: the idempotency key keeps it
		// from running twice.
		f.log.Warn("hub commands: ack", "id", c.ID, "err", err)
	}
	f.log.Info("hub commands: command decided", "id", rec.ID, "asset", rec.Asset, "status", string(rec.Status), "reason", rec.Reason)
}

// refuse terminates a message that can never be recorded and tells the
// hub when the message names a command id.
func (f *follower) refuse(m jetstream.Msg, c protocol.Command, why error) {
	f.log.Warn("hub commands: command refused", "subject", m.Subject(), "bytes", len(m.Data()), "err", why)
	_ = m.Term()
	if f.opts.OnRefused == nil {
		return
	}
	if c.ID == "" {
		// Not decoded: its id, when it has a usable one, names it.
		var loose struct {
			ID    string `json:"id"`
			Asset string `json:"asset"`
		}
		if len(m.Data()) > protocol.MaxCommandBytes || json.Unmarshal(m.Data(), &loose) != nil {
			return
		}
		c.ID, c.Asset = loose.ID, loose.Asset
	}
	if protocol.CheckCommandID(c.ID) != nil {
		return // the id is no hub command id
	}
	if len(c.Asset) > protocol.MaxCommandName || c.Asset == "" {
		c.Asset = "-"
	}
	now := time.Now().UTC()
	reason := "refused by the edge: " + why.Error()
	f.opts.OnRefused(command.Command{ID: c.ID, Asset: c.Asset, Product: c.Product, Service: c.Service, Origin: protocol.CommandOrigin,
		Status: command.Rejected, Reason: reason, Created: now, Updated: now, Done: now, Version: 1},
		[]command.Transition{{Seq: 1, ID: c.ID, Asset: c.Asset, Origin: protocol.CommandOrigin, To: command.Rejected, At: now, Reason: reason}})
}
