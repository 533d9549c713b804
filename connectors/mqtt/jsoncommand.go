package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/topic"
)

// The topic templates of the JSON command topic are engine/topic's (shared
// with the edge's control config and the device simulator).
const (
	PlaceholderProduct = topic.PlaceholderProduct
	PlaceholderAsset   = topic.PlaceholderAsset
	PlaceholderPoint   = topic.PlaceholderPoint
	// MaxTemplateLen bounds a topic template.
	MaxTemplateLen = topic.MaxTemplateLen
)

// TopicTemplate is a checked command or reply topic template (see
// topic.Template).
type TopicTemplate = topic.Template

// ParseTopicTemplate checks a template (see topic.Parse).
func ParseTopicTemplate(s string) (TopicTemplate, error) { return topic.Parse(s) }

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
	downlinkCore // Tracker, Unmatched, Start, Ready, Close
	topic        TopicTemplate
	replyTopic   TopicTemplate
}

// ErrNotOnePoint is returned for a command the JSON command topic cannot
// carry: it sets exactly one point (service measurepoint.set).
var ErrNotOnePoint = errors.New("the JSON command topic carries commands that set exactly one point")

// NewJSONDownlink checks opts and returns a downlink; Start connects it.
func NewJSONDownlink(opts JSONDownlinkOptions) (*JSONDownlink, error) {
	cmd, err := ParseTopicTemplate(opts.Topic)
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
	if topic.Overlaps(cmd, reply) {
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
	d := &JSONDownlink{topic: cmd, replyTopic: reply}
	err = d.init(downlinkConfig{
		name:        "mqtt json downlink",
		client:      opts.Client,
		tracker:     opts.Tracker,
		unmatched:   opts.Unmatched,
		log:         opts.Log,
		sendTimeout: opts.SendTimeout,
		qos0:        opts.QoS0,
		replyFilter: reply.Filter(),
		onMessage:   d.onMessage,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
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
	if d.topic.Has(PlaceholderProduct) || d.replyTopic.Has(PlaceholderProduct) {
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
		return d.reject(c, bad)
	}
	return d.dispatch(ctx, c, func(ctx context.Context) error { return d.publish(ctx, topic, payload) })
}

// Deliver publishes a command its tracker already holds as sent (for the
// control arbiter); the device's reply moves it on in the tracker.
func (d *JSONDownlink) Deliver(ctx context.Context, c command.Command) error {
	topic, payload, err := d.payload(&c)
	if err != nil {
		return err
	}
	return d.delivered(c, d.publish(ctx, topic, payload))
}

// Check says why the downlink could not deliver c: it sets more or less
// than one point, or names a device, product or point that cannot be part
// of the topic. It makes the arbiter (engine/control) refuse such a
// command when it is submitted.
func (d *JSONDownlink) Check(c *command.Command) error {
	if c.Service == "" {
		c.Service = command.SetPoints
	}
	if _, _, err := d.payload(c); err != nil {
		return fmt.Errorf("%s (%s): %w", d.name, d.topic, err)
	}
	return nil
}

// OnePoint reports that every command sent over the JSON command topic
// sets exactly one point.
func (d *JSONDownlink) OnePoint(string, string) bool { return true }

// onMessage matches a reply to its command.
func (d *JSONDownlink) onMessage(m message) {
	product, asset, point, ok := d.replyTopic.Match(m.topic)
	if !ok {
		return
	}
	rep, err := codec.ParseReply(m.payload)
	if err != nil {
		d.badReply(m.topic, err)
		return
	}
	from := command.Target{Product: product, Asset: asset, Service: command.SetPoints}
	if c, known := d.tracker.Get(rep.ID); known {
		if !d.replyTopic.Has(PlaceholderProduct) {
			from.Product = c.Product // the topic does not say: not part of the device's address
		}
		if d.replyTopic.Has(PlaceholderPoint) {
			if _, set := c.Inputs[point]; !set || len(c.Inputs) != 1 {
				from.Service = command.SetPoints + ":" + point // another point's reply: misdirected
			}
		}
	}
	d.reply(rep, from)
}

// clipText bounds a network string for a log line.
func clipText(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
