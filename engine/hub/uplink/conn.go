package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
)

// publisher publishes the forwarders' messages to JetStream over the
// edge's connection, one at a time, each waiting for its ack. The message
// id and the publisher's random nonce travel as Nats-Msg-Id, so JetStream
// drops the copies a retry sends within the stream's duplicate window;
// the metadata travel as headers (the hub reads the id from them).
//
// The nonce keeps other edges from silencing this one: JetStream drops a
// message whose Nats-Msg-Id it received within the window on any subject
// of the stream, and message ids ("edge/stream/seq") are predictable, so
// an edge publishing on its own subjects only could send this edge's next
// ids first and have its reports, heartbeats and command records
// acknowledged as duplicates and never stored. A copy sent again after a
// restart (a new nonce) is stored twice in the stream; the hub keeps every
// record once by its content.
//
// The subject is the one of the edge the message's id names (subject):
// a buffer stored under an earlier edge id keeps that id for the rows it
// holds (buffer.Buffer.Identity), and the hub refuses a message whose
// subject names another edge than its id.
type publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
	subject func(edge string) (string, error)
	nonce   string // random, unique to the uplink
}

// Publish implements message.Publisher.
func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	if nc := p.js.Conn(); nc != nil && !nc.IsConnected() {
		return fmt.Errorf("uplink: not connected to the hub (%v)", nc.Status())
	}
	for _, m := range msgs {
		subj := topic
		if e := m.Metadata.Get(outbound.MetaEdge); e != "" && p.subject != nil {
			if s, err := p.subject(e); err == nil {
				subj = s
			}
		}
		nm := natsgo.NewMsg(subj)
		for k, v := range m.Metadata {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(natsgo.MsgIdHdr, m.UUID+"#"+p.nonce)
		nm.Data = m.Payload
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		_, err := p.js.PublishMsg(ctx, nm)
		cancel()
		if err != nil {
			return fmt.Errorf("uplink: publish to %s: %w", subj, err)
		}
	}
	return nil
}

// Close implements message.Publisher; the connection is the caller's.
func (p *publisher) Close() error { return nil }

// permanent reports errors that retrying the same message cannot fix.
func permanent(err error) bool {
	if errors.Is(err, natsgo.ErrMaxPayload) || errors.Is(err, natsgo.ErrBadSubject) ||
		errors.Is(err, natsgo.ErrPermissionViolation) || errors.Is(err, natsgo.ErrInvalidMsg) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10054, // message size exceeds maximum allowed
			10097: // header size exceeds maximum allowed
			return true
		}
	}
	return false
}

// Dial connects to the hub's NATS servers in the background and returns
// at once, also while they are down: the client reconnects forever.
// Publishes fail at once while it is disconnected (no reconnect buffer),
// which lets the forwarders back off. name names the client on the server.
func Dial(hc *agent.HubConfig, name string, log *slog.Logger) (*natsgo.Conn, error) {
	if hc == nil {
		return nil, errors.New("uplink: no hub configuration")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := redact.String(hc.URL)
	opts := []natsgo.Option{
		natsgo.Name(name),
		natsgo.RetryOnFailedConnect(true),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(time.Second),
		natsgo.Timeout(5 * time.Second),
		natsgo.ReconnectBufSize(-1),
		natsgo.NoCallbacksAfterClientClose(),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				err = redact.Error(err)
			}
			log.Warn("hub: disconnected; reports and heartbeats wait in their buffers", "url", url, "err", err)
		}),
		natsgo.ReconnectHandler(func(c *natsgo.Conn) {
			log.Info("hub: connected", "server", redact.String(c.ConnectedUrlRedacted()))
		}),
		natsgo.ConnectHandler(func(c *natsgo.Conn) {
			log.Info("hub: connected", "server", redact.String(c.ConnectedUrlRedacted()))
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			log.Warn("hub: asynchronous error", "err", redact.Error(err))
		}),
	}
	switch {
	case hc.User != "":
		opts = append(opts, natsgo.UserInfo(hc.User, hc.Password))
	case hc.Token != "":
		opts = append(opts, natsgo.Token(hc.Token))
	case len(hc.Credentials) > 0:
		opts = append(opts, natsgo.UserCredentialBytes(hc.Credentials))
	}
	if hc.TLS != nil {
		opts = append(opts, natsgo.Secure(hc.TLS.Clone()))
	}
	nc, err := natsgo.Connect(hc.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("hub: connecting to %s: %w", url, redact.Error(err))
	}
	return nc, nil
}
