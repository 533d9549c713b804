// Package amqp provides the "amqp" publisher: it sends persistent messages
// to a RabbitMQ (AMQP 0.9.1) queue or exchange through Watermill's AMQP
// publisher with publisher confirms switched on, so Publish returns only
// once the broker has taken responsibility for each message. (Watermill's
// durable configurations leave confirms off: Publish would return as soon
// as the bytes were written to the socket.)
//
// Before the first publish the publisher declares its topology — the
// durable queue, the exchange and the binding between them — because a
// message the broker cannot route is confirmed and then dropped.
//
// Watermill's constructor dials the broker and fails when it is down, so
// the publisher connects on the first Publish and retries on each later
// one; once connected, Watermill reconnects in the background and Publish
// fails at once ("not connected") while it does.
package amqp

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the amqp publisher.
var Spec = spec.Spec{
	Name:    "amqp",
	Summary: "Publishes persistent, confirmed messages to a RabbitMQ queue or exchange.",
	Description: "Set `queue` to publish to a durable queue through the default exchange, or `exchange` " +
		"(with `routing_key`) to publish to an exchange; with both, the queue is bound to the exchange " +
		"with the routing key so that no message is unroutable. Messages are persistent, the channel " +
		"is in confirm mode, and Publish returns once every message is confirmed. The stable ID is the " +
		"AMQP `message_id`; metadata travels as headers.",
	Fields: append([]spec.Field{
		{Name: "url", Type: spec.String, Default: "amqp://guest:guest@127.0.0.1:5672/",
			Description: "Broker URL with credentials and vhost; `amqps://` uses TLS.", Example: "amqps://sluice:secret@mq.example.com:5671/telemetry"},
		{Name: "queue", Type: spec.String, Optional: true,
			Description: "Durable queue that receives the messages.", Example: "site-a.stats"},
		{Name: "exchange", Type: spec.String, Optional: true,
			Description: "Exchange to publish to (default: the default exchange, routing to `queue`).", Example: "telemetry"},
		{Name: "exchange_type", Type: spec.String, Default: "topic", Enum: []string{"direct", "fanout", "topic", "headers"},
			Description: "Type of the exchange when it is declared."},
		{Name: "routing_key", Type: spec.String, Optional: true,
			Description: "Routing key of published messages and of the queue binding (default: the queue name without an exchange, empty with one).",
			Example:     "site-a.stats"},
		{Name: "declare", Type: spec.Bool, Default: true,
			Description: "Declare the queue, the exchange and the binding (durable) before the first publish. A declaration that differs from an existing one fails with PRECONDITION_FAILED."},
		{Name: "queue_type", Type: spec.String, Default: "classic", Enum: []string{"classic", "quorum"},
			Description: "Type of a declared queue (`x-queue-type`).", Advanced: true},
		{Name: "timeout", Type: spec.Duration, Default: "10s",
			Description: "Longest wait for one Publish call to be confirmed; the broker may still confirm later."},
		{Name: "connect_timeout", Type: spec.Duration, Default: "5s", Advanced: true,
			Description: "Timeout of each connection attempt."},
		{Name: "max_message_bytes", Type: spec.Int, Default: 16 << 20, Advanced: true,
			Description: "Largest payload sent; a larger message is rejected as permanent before sending (the broker would close the channel). RabbitMQ's own limit is `max_message_size` (16 MiB by default since 4.0)."},
		outbound.TLSField(),
	}, outbound.EncodingFields(outbound.JSONBatch)...),
	Example: `sinks:
  cloud:
    type: amqp
    input: stats
    url: amqp://sluice:secret@mq.example.com:5672/
    exchange: telemetry
    routing_key: site-a.stats
    queue: telemetry.site-a
    encoding: json_batch`,
}

func init() { outbound.RegisterPublisher(Spec, New) }

// Config is the typed configuration of an amqp publisher.
type Config struct {
	URL             string
	Queue           string
	Exchange        string
	ExchangeType    string
	RoutingKey      string
	Declare         bool
	QueueType       string
	Timeout         time.Duration
	ConnectTimeout  time.Duration
	MaxMessageBytes int
	AMQP            amqp.Config
}

// New builds an amqp publisher from its configuration.
func New(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	c := Config{
		URL:             cfg.String("url"),
		Queue:           cfg.String("queue"),
		Exchange:        cfg.String("exchange"),
		ExchangeType:    cfg.String("exchange_type"),
		RoutingKey:      cfg.String("routing_key"),
		Declare:         cfg.Bool("declare"),
		QueueType:       cfg.String("queue_type"),
		Timeout:         cfg.Duration("timeout"),
		ConnectTimeout:  cfg.Duration("connect_timeout"),
		MaxMessageBytes: int(cfg.Int("max_message_bytes")),
	}
	if err := outbound.Require(cfg, "url"); err != nil {
		return nil, err
	}
	// Parsed first by the check every connector shares: a port must be
	// in 1..65535, and an error never quotes a password.
	if _, err := redact.ParseURL(c.URL); err != nil {
		return nil, cfg.Errorf("url", "%v", err)
	}
	uri, err := amqp.ParseURI(c.URL)
	if err != nil {
		return nil, cfg.Errorf("url", "%v", redact.Error(err))
	}
	if c.Queue == "" && c.Exchange == "" {
		return nil, cfg.Errorf("", "set queue, exchange or both")
	}
	if strings.HasPrefix(c.Exchange, "amq.") && c.Declare {
		return nil, cfg.Errorf("exchange", "exchange %q is predeclared by the broker; set declare: false", c.Exchange)
	}
	for _, name := range []string{"timeout", "connect_timeout", "max_message_bytes"} {
		if err := outbound.Positive(cfg, name); err != nil {
			return nil, err
		}
	}
	if !cfg.Has("routing_key") && c.Exchange == "" {
		c.RoutingKey = c.Queue
	}
	if c.Exchange == "" && c.RoutingKey != c.Queue {
		return nil, cfg.Errorf("routing_key", "without an exchange the routing key is the queue name")
	}
	tlsc, err := outbound.TLSConfig(cfg, bc)
	if err != nil {
		return nil, err
	}
	if tlsc != nil && uri.Scheme != "amqps" {
		// The client speaks TLS only to amqps:// URLs: it would
		// connect in plaintext.
		return nil, cfg.Errorf("tls", "tls.enabled needs an amqps:// URL (the client would connect to %s in plaintext)", redact.URL(c.URL))
	}
	c.AMQP = amqp.Config{
		Heartbeat:       10 * time.Second,
		Locale:          "en_US",
		Dial:            amqp.DefaultDial(c.ConnectTimeout),
		TLSClientConfig: tlsc,
		Properties:      amqp.Table{"connection_name": "sluice " + bc.Pipeline + "/" + bc.Name},
	}
	topic := c.Queue
	if c.Exchange != "" {
		topic = c.Exchange
	}
	if bc.DryRun {
		// Checked; nothing is connected.
		return nil, nil
	}
	return outbound.New(cfg, NewPublisher(c, bc), topic, Permanent)
}

// Publisher publishes with confirms through Watermill's AMQP publisher,
// which it builds on first use.
type Publisher struct {
	cfg  Config
	lazy *outbound.Lazy

	declared bool
	mu       sync.Mutex    // guards declared
	slot     chan struct{} // one Watermill publish at a time (see Publish)
}

// NewPublisher returns a publisher that connects on the first Publish.
func NewPublisher(c Config, bc engine.BuildContext) *Publisher {
	p := &Publisher{cfg: c, slot: make(chan struct{}, 1)}
	p.lazy = outbound.NewLazy(func() (message.Publisher, error) {
		wc := wmConfig(c)
		pub, err := wmamqp.NewPublisher(wc, outbound.Logger(bc))
		if err != nil {
			// %v: a connection failure (even "access refused") is an
			// outage to retry, never a permanent message error.
			return nil, fmt.Errorf("amqp: %v", err)
		}
		return pub, nil
	})
	return p
}

// wmConfig is Watermill's durable configuration with confirms on.
func wmConfig(c Config) wmamqp.Config {
	var wc wmamqp.Config
	if c.Exchange == "" {
		wc = wmamqp.NewDurableQueueConfig(c.URL)
	} else {
		wc = wmamqp.NewDurablePubSubConfig(c.URL, nil)
		wc.Exchange.Type = c.ExchangeType
	}
	wc.Connection.AmqpConfig = &c.AMQP
	wc.Exchange.GenerateName = wmamqp.GenerateExchangeNameConstant(c.Exchange)
	wc.Publish.GenerateRoutingKey = func(string) string { return c.RoutingKey }
	wc.Publish.ConfirmDelivery = true
	wc.Publish.ChannelPoolSize = 1
	// The topology is declared by this package (see declare).
	wc.TopologyBuilder = noTopology{}
	wc.Marshaler = wmamqp.DefaultMarshaler{
		PostprocessPublishing: func(p amqp.Publishing) amqp.Publishing {
			if id, ok := p.Headers[wmamqp.DefaultMessageUUIDHeaderKey].(string); ok {
				p.MessageId = id
			}
			if enc, ok := p.Headers[outbound.MetaEncoding].(string); ok {
				p.ContentType = outbound.Encoding(enc).ContentType()
			}
			p.AppId = "sluice"
			return p
		},
	}
	return wc
}

// ErrTooLarge is returned for a payload above max_message_bytes.
var ErrTooLarge = errors.New("amqp: message larger than max_message_bytes")

// Publish publishes the messages in order and returns once the broker
// confirmed all of them, or after timeout.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if len(m.Payload) > p.cfg.MaxMessageBytes {
			return outbound.MarkPermanent(fmt.Errorf("%w: %s has %d bytes", ErrTooLarge, m.UUID, len(m.Payload)))
		}
	}
	pub, err := p.lazy.Get()
	if err != nil {
		return err
	}
	wm := pub.(*wmamqp.Publisher)
	if err := p.declare(wm); err != nil {
		return err
	}
	// Watermill waits for each confirm without a deadline, and the
	// client ignores contexts. Run the publish aside and stop waiting
	// after timeout; the slot keeps at most one such publish running.
	timer := time.NewTimer(p.cfg.Timeout)
	defer timer.Stop()
	select {
	case p.slot <- struct{}{}:
	case <-timer.C:
		return fmt.Errorf("amqp: a previous publish is still waiting for its confirm after %v", p.cfg.Timeout)
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-p.slot }()
		done <- wm.Publish(topic, msgs...)
	}()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("amqp: no confirm within %v", p.cfg.Timeout)
	}
}

// declare declares the queue, the exchange and their binding once.
func (p *Publisher) declare(wm *wmamqp.Publisher) error {
	if !p.cfg.Declare {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.declared {
		return nil
	}
	if !wm.IsConnected() {
		return errors.New("amqp: not connected")
	}
	ch, err := wm.Connection().Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %v", err)
	}
	defer ch.Close()
	c := p.cfg
	if c.Exchange != "" {
		if err := ch.ExchangeDeclare(c.Exchange, c.ExchangeType, true, false, false, false, nil); err != nil {
			return fmt.Errorf("amqp: declare exchange %s: %v", c.Exchange, err)
		}
	}
	if c.Queue != "" {
		args := amqp.Table{}
		if c.QueueType == "quorum" {
			args["x-queue-type"] = "quorum"
		}
		if _, err := ch.QueueDeclare(c.Queue, true, false, false, false, args); err != nil {
			return fmt.Errorf("amqp: declare queue %s: %v", c.Queue, err)
		}
		if c.Exchange != "" {
			if err := ch.QueueBind(c.Queue, c.RoutingKey, c.Exchange, false, nil); err != nil {
				return fmt.Errorf("amqp: bind queue %s to %s: %v", c.Queue, c.Exchange, err)
			}
		}
	}
	p.declared = true
	return nil
}

// Close closes the connection, if any. It is idempotent.
func (p *Publisher) Close() error { return p.lazy.Close() }

// Permanent reports errors that retrying the same message cannot fix: a
// message above max_message_bytes or rejected by the broker as too large,
// not permitted or failing a precondition. Connection and declaration
// failures are never permanent.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrTooLarge) {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.ContentTooLarge, amqp.AccessRefused, amqp.PreconditionFailed:
			return true
		}
	}
	return false
}

// noTopology declares nothing: the publisher declares its topology itself.
type noTopology struct{}

func (noTopology) BuildTopology(*amqp.Channel, wmamqp.BuildTopologyParams, wmamqp.Config, watermill.LoggerAdapter) error {
	return nil
}
func (noTopology) ExchangeDeclare(*amqp.Channel, string, wmamqp.Config) error { return nil }
