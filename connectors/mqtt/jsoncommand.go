package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine/command"
)

// The topic templates of the JSON command topic are codec's (shared with
// the device simulator).
const (
	PlaceholderProduct = codec.PlaceholderProduct
	PlaceholderAsset   = codec.PlaceholderAsset
	PlaceholderPoint   = codec.PlaceholderPoint
	// MaxTemplateLen bounds a topic template.
	MaxTemplateLen = codec.MaxTemplateLen
)

// TopicTemplate is a checked command or reply topic template (see
// codec.TopicTemplate).
type TopicTemplate = codec.TopicTemplate

// ParseTopicTemplate checks a template (see codec.ParseTopicTemplate).
func ParseTopicTemplate(s string) (TopicTemplate, error) { return codec.ParseTopicTemplate(s) }

// JSONDownlinkOptions configures a JSONDownlink.
type JSONDownlinkOptions struct {
	// Client says how to reach the broker the devices listen on.
	Client ClientOptions
	// Tracker records the commands and their outcome; nil creates one
	// with default options.
	Tracker *command.Tracker
	// Topic is the template of the command topic (see
	// ParseTopicTemplate), for example "plant/{asset}/cmd".
	Topic string
	// ReplyTopic is the template of the reply topic (default: Topic +
	// "/reply"). It must not be a topic commands go to.
	ReplyTopic string
	// QoS0 sends commands at QoS 0 rather than 1.
	QoS0 bool
	// SendTimeout bounds the wait for the broker when sending one command
	// (default 10s).
	SendTimeout time.Duration
	// Log receives command failures; nil discards them.
	Log *slog.Logger
	// Unmatched, when set, counts the replies that move no command.
	Unmatched *atomic.Int64
}

// JSONDownlink sends set-points to devices that are not EnOS devices over
// a generic MQTT JSON command topic: each command sets one point, as
// {"id":"<command id>","point":"<name>","value":<value>} on the command
// topic, and the device answers {"id":"<command id>","code":200} (any
// other code is a failure; "message" and "data" are kept) on the reply
// topic. Replies are matched by id and by the device (and product and
// point, where the reply topic names them); commands are tracked in a
// command.Tracker like those of the EnOS Downlink. Ready and Deliver make
// it a transport of the control arbiter (engine/control). It is safe for
// concurrent use.
type JSONDownlink struct {
	opts      JSONDownlinkOptions
	topic     TopicTemplate
	reply     TopicTemplate
	tracker   *command.Tracker
	own       bool
	cl        client
	ready     chan struct{}
	once      sync.Once
	unmatched *atomic.Int64

	mu      sync.Mutex
	started bool
	closed  bool
}

// ErrNotOnePoint is returned for a command the JSON command topic cannot
// carry: it sets exactly one point (service measurepoint.set).
var ErrNotOnePoint = errors.New("the JSON command topic carries commands that set exactly one point")

// NewJSONDownlink checks opts and returns a downlink; Start connects it.
func NewJSONDownlink(opts JSONDownlinkOptions) (*JSONDownlink, error) {
	topic, err := ParseTopicTemplate(opts.Topic)
	if err != nil {
		return nil, fmt.Errorf("mqtt json downlink: topic: %w", err)
	}
	if opts.ReplyTopic == "" {
		opts.ReplyTopic = opts.Topic + "/reply"
	}
	reply, err := ParseTopicTemplate(opts.ReplyTopic)
	if err != nil {
		return nil, fmt.Errorf("mqtt json downlink: reply topic: %w", err)
	}
	if codec.Overlaps(topic, reply) {
		return nil, fmt.Errorf("mqtt json downlink: reply topic %q matches the command topic %q", opts.ReplyTopic, opts.Topic)
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Client.Log == nil {
		opts.Client.Log = opts.Log
	}
	d := &JSONDownlink{opts: opts, topic: topic, reply: reply, tracker: opts.Tracker, ready: make(chan struct{}), unmatched: opts.Unmatched}
	if d.unmatched == nil {
		d.unmatched = new(atomic.Int64)
	}
	if d.tracker == nil {
		d.tracker, d.own = command.New(command.Options{}), true
	}
	cl, err := newClient(clientConfig{
		ClientOptions: opts.Client,
		subs:          []subscription{{topic: reply.Filter(), qos: 1}},
		onMessage:     d.onMessage,
		onUp:          func() { d.once.Do(func() { close(d.ready) }) },
		onSubscribeError: func(topic string, err error) {
			d.opts.Log.Error("mqtt json downlink: cannot receive replies", "topic", topic, "err", err)
		},
	})
	if err != nil {
		return nil, err
	}
	d.cl = cl
	return d, nil
}

// Tracker returns the tracker recording the downlink's commands.
func (d *JSONDownlink) Tracker() *command.Tracker { return d.tracker }

// Unmatched returns the number of replies that matched no command.
func (d *JSONDownlink) Unmatched() int64 { return d.unmatched.Load() }

// Start connects to the broker and subscribes to replies; it returns once
// subscribed, or with ctx's error.
func (d *JSONDownlink) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New("mqtt json downlink: closed")
	}
	if !d.started {
		d.started = true
		if err := d.cl.start(ctx); err != nil {
			d.mu.Unlock()
			return err
		}
	}
	d.mu.Unlock()
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready returns once the downlink is connected, or with ctx's error.
func (d *JSONDownlink) Ready(ctx context.Context) error {
	if err := d.Start(ctx); err != nil {
		return err
	}
	return d.cl.awaitConnection(ctx)
}

// payload checks c and encodes its message; it returns the topic too.
func (d *JSONDownlink) payload(c *command.Command) (string, []byte, error) {
	if c.Service != command.SetPoints || len(c.Inputs) != 1 {
		return "", nil, ErrNotOnePoint
	}
	var point string
	var value any
	for point, value = range c.Inputs {
	}
	parts := map[string]string{PlaceholderAsset: c.Asset, PlaceholderPoint: point}
	if d.topic.Has(PlaceholderProduct) || d.reply.Has(PlaceholderProduct) {
		parts[PlaceholderProduct] = c.Product
	}
	for name, v := range parts {
		if err := codec.CheckKey(v, 0); err != nil {
			return "", nil, fmt.Errorf("%w: %s: %w", ErrBadTopicKey, name, err)
		}
	}
	b, err := json.Marshal(struct {
		ID    string `json:"id"`
		Point string `json:"point"`
		Value any    `json:"value"`
	}{c.ID, point, value})
	if err != nil {
		return "", nil, fmt.Errorf("mqtt json downlink: value of %s: %w", point, err)
	}
	return d.topic.Topic(c.Product, c.Asset, point), b, nil
}

// publish hands a message to the broker, waiting for a connection up to
// the send timeout.
func (d *JSONDownlink) publish(ctx context.Context, topic string, payload []byte) error {
	sctx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
	defer cancel()
	qos := byte(1)
	if d.opts.QoS0 {
		qos = 0
	}
	for {
		err := d.cl.publish(sctx, topic, qos, payload)
		if !errors.Is(err, errNotConnected) {
			return err
		}
		if werr := d.cl.awaitConnection(sctx); werr != nil {
			return fmt.Errorf("%w: %w", errBrokerUnreachable, werr)
		}
	}
}

// Send submits c to the tracker and publishes it. It returns once the
// broker has the command (status sent) or it could not be sent (rejected
// or failed, with an error); the device's reply, or its absence, moves it
// on later.
func (d *JSONDownlink) Send(ctx context.Context, c command.Command) (command.Command, error) {
	if c.Asset == "" {
		return c, errors.New("mqtt json downlink: a command needs a device")
	}
	if c.Service == "" {
		c.Service = command.SetPoints
	}
	c, err := d.tracker.Submit(c)
	if err != nil {
		return c, err
	}
	topic, payload, bad := d.payload(&c)
	if bad != nil {
		c, _ = d.tracker.Reject(c.ID, bad.Error())
		return c, fmt.Errorf("mqtt json downlink: command %s: %w", c.ID, bad)
	}
	if err := d.publish(ctx, topic, payload); err != nil {
		d.opts.Log.Warn("mqtt json downlink: command not sent", "id", c.ID, "device", c.Asset, "err", err)
		c, _ = d.tracker.Fail(c.ID, "not sent: "+err.Error())
		return c, fmt.Errorf("mqtt json downlink: command %s not sent: %w", c.ID, err)
	}
	sent, err := d.tracker.Sent(c.ID)
	if errors.Is(err, command.ErrFinal) {
		got, _ := d.tracker.Get(c.ID)
		return got, nil
	}
	return sent, err
}

// Deliver publishes a command its tracker already holds as sent (for the
// control arbiter); the device's reply moves it on in the tracker.
func (d *JSONDownlink) Deliver(ctx context.Context, c command.Command) error {
	topic, payload, err := d.payload(&c)
	if err != nil {
		return err
	}
	if err := d.publish(ctx, topic, payload); err != nil {
		d.opts.Log.Warn("mqtt json downlink: command not delivered", "id", c.ID, "device", c.Asset, "err", err)
		return fmt.Errorf("mqtt json downlink: command %s not delivered: %w", c.ID, err)
	}
	return nil
}

// onMessage matches a reply to its command.
func (d *JSONDownlink) onMessage(m message) {
	product, asset, point, ok := d.reply.Match(m.topic)
	if !ok {
		return
	}
	rep, err := codec.ParseReply(m.payload)
	if err != nil {
		d.unmatched.Add(1)
		d.opts.Log.Warn("mqtt json downlink: bad reply", "topic", clipText(m.topic), "err", err)
		return
	}
	from := command.Target{Product: product, Asset: asset, Service: command.SetPoints}
	if c, known := d.tracker.Get(rep.ID); known {
		if !d.reply.Has(PlaceholderProduct) {
			from.Product = c.Product // the topic does not say: not part of the device's address
		}
		if d.reply.Has(PlaceholderPoint) {
			if _, set := c.Inputs[point]; !set || len(c.Inputs) != 1 {
				from.Service = command.SetPoints + ":" + point // another point's reply: misdirected
			}
		}
	}
	if _, err := d.tracker.Reply(rep.ID, from, rep.Code, rep.Message, rep.Data); errors.Is(err, command.ErrUnknown) || errors.Is(err, command.ErrMisdirected) {
		d.unmatched.Add(1)
	}
}

// clipText bounds a network string for a log line.
func clipText(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Close disconnects; a tracker created by NewJSONDownlink stops its
// timeouts. It is idempotent.
func (d *JSONDownlink) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := d.cl.stop(ctx)
	if d.own {
		d.tracker.Close()
	}
	return err
}
