package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine/command"
)

// DownlinkOptions configures a Downlink.
type DownlinkOptions struct {
	// Client says how to reach the broker the devices listen on.
	Client ClientOptions
	// Tracker records the commands and their outcome; nil creates one
	// with default options.
	Tracker *command.Tracker
	// QoS0 sends commands at QoS 0 rather than 1: the broker does not
	// confirm having them.
	QoS0 bool
	// SendTimeout bounds the wait for the broker (connection and
	// acknowledgement) when sending one command (default 10s); a command
	// that cannot be handed to the broker in time fails.
	SendTimeout time.Duration
	// Log receives command failures; nil discards them.
	Log *slog.Logger
	// Unmatched, when set, counts the replies that move no command: a
	// reply that cannot be read, names no command, or comes from another
	// device or service than its command's (see command.Tracker.Reply).
	Unmatched *atomic.Int64
}

// Downlink sends commands to EnOS devices over MQTT — measure-point
// settings and service invocations on
// /sys/{productKey}/{deviceKey}/thing/service/{service} — and matches the
// devices' replies on the same topic + "_reply" by message id. Each
// command's progress (accepted, sent, acked, failed, timeout) is recorded
// in a command.Tracker. It is safe for concurrent use.
type Downlink struct {
	downlinkCore // Tracker, Unmatched, Start, Ready, Close
}

// ErrBadTopicKey is returned by Send for a command whose product key,
// device key or service cannot be part of a topic (empty segments, /, the
// wildcards + and #, or keys longer than codec.MaxKeyLen): such a command
// is rejected before anything is published.
var ErrBadTopicKey = errors.New("key cannot be part of a topic")

// checkTarget checks the parts of a command's topic.
func checkTarget(c *command.Command) error {
	if err := codec.CheckKey(c.Product, 0); err != nil {
		return fmt.Errorf("%w: product key: %w", ErrBadTopicKey, err)
	}
	if err := codec.CheckKey(c.Asset, 0); err != nil {
		return fmt.Errorf("%w: device key: %w", ErrBadTopicKey, err)
	}
	// Dots in a service stand for slashes: each part is a topic segment.
	for part := range strings.SplitSeq(c.Service, ".") {
		if err := codec.CheckKey(part, 0); err != nil {
			return fmt.Errorf("%w: service %q: %w", ErrBadTopicKey, c.Service, err)
		}
	}
	return nil
}

// errBrokerUnreachable is returned by Send when no connection came up in
// time.
var errBrokerUnreachable = errors.New("broker unreachable")

// replyFilter receives the replies of every device's services.
const replyFilter = "/sys/+/+/thing/service/#"

// NewDownlink returns a downlink; Start connects it.
func NewDownlink(opts DownlinkOptions) (*Downlink, error) {
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Client.Log == nil {
		opts.Client.Log = opts.Log
	}
	d := &Downlink{}
	err := d.init(downlinkConfig{
		name:        "mqtt downlink",
		client:      opts.Client,
		tracker:     opts.Tracker,
		unmatched:   opts.Unmatched,
		log:         opts.Log,
		sendTimeout: opts.SendTimeout,
		qos0:        opts.QoS0,
		replyFilter: replyFilter,
		onMessage:   d.onMessage,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// SetPoints sets measure points of a device (service "measurepoint.set").
func (d *Downlink) SetPoints(ctx context.Context, productKey, deviceKey string, points map[string]any) (command.Command, error) {
	return d.Send(ctx, command.Command{Product: productKey, Asset: deviceKey, Service: command.SetPoints, Inputs: points})
}

// Invoke invokes a service of a device.
func (d *Downlink) Invoke(ctx context.Context, productKey, deviceKey, service string, inputs map[string]any) (command.Command, error) {
	return d.Send(ctx, command.Command{Product: productKey, Asset: deviceKey, Service: service, Inputs: inputs})
}

// Send submits c to the tracker and publishes it to its device. It returns
// once the broker has the command (status sent) or it could not be sent
// (status failed, with an error); the device's reply, or its absence,
// moves it on later (see Tracker().Wait). c.ID, when set, must be unique.
func (d *Downlink) Send(ctx context.Context, c command.Command) (command.Command, error) {
	if c.Product == "" || c.Asset == "" || c.Service == "" {
		return c, errors.New("mqtt downlink: a command needs a product key, a device key and a service")
	}
	bad := checkTarget(&c)
	c, err := d.tracker.Submit(c)
	if err != nil {
		return c, err
	}
	if bad != nil {
		return d.reject(c, bad)
	}
	return d.dispatch(ctx, c, func(ctx context.Context) error { return d.send(ctx, c) })
}

// send encodes c and hands it to the broker, waiting for a connection up
// to the send timeout.
func (d *Downlink) send(ctx context.Context, c command.Command) error {
	payload, err := codec.AppendRequest(nil, c.ID, c.Service, c.Inputs)
	if err != nil {
		return err
	}
	return d.publish(ctx, codec.ServiceTopicFor(c.Product, c.Asset, c.Service), payload)
}

// Deliver publishes a command that its tracker (the downlink's) already
// holds as sent, for an arbiter that records the command before handing
// it over (engine/control). The device's reply moves it on in the
// tracker; Deliver neither submits it nor records its outcome.
func (d *Downlink) Deliver(ctx context.Context, c command.Command) error {
	if c.Product == "" || c.Asset == "" || c.Service == "" {
		return errors.New("mqtt downlink: a command needs a product key, a device key and a service")
	}
	if err := checkTarget(&c); err != nil {
		return err
	}
	return d.delivered(c, d.send(ctx, c))
}

// Check says why the downlink could not deliver c: no product key, device
// key or service, or one that cannot be part of a topic. It makes the
// arbiter (engine/control) refuse such a command when it is submitted.
func (d *Downlink) Check(c *command.Command) error {
	if c.Product == "" || c.Asset == "" || c.Service == "" {
		return errors.New("mqtt downlink: a command to an EnOS device needs a product key, a device key and a service")
	}
	return checkTarget(c)
}

// onMessage matches a reply to its command.
func (d *Downlink) onMessage(m message) {
	t := codec.ParseTopic(m.topic)
	if t.Kind != codec.ReplyTopic || t.Of != codec.ServiceTopic {
		return // our own commands, on the same wildcard
	}
	rep, err := codec.ParseReply(m.payload)
	if err != nil {
		d.badReply(m.topic, err)
		return
	}
	from := command.Target{Product: t.ProductKey, Asset: t.DeviceKey, Service: t.Service}
	d.reply(rep, from)
}
