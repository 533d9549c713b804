package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine/command"
)

// downlinkCore is the part Downlink and JSONDownlink share: the client
// subscribed to the replies, the tracker, the count of unmatched replies,
// starting, sending with a bounded wait for the broker, and closing. Only
// the topics and the payloads differ between the two.
type downlinkCore struct {
	name        string // prefix of errors and log lines, e.g. "mqtt downlink"
	log         *slog.Logger
	sendTimeout time.Duration
	qos0        bool

	tracker   *command.Tracker
	own       bool // the tracker was created here
	cl        client
	ready     chan struct{}
	once      sync.Once
	unmatched *atomic.Int64

	mu      sync.Mutex
	started bool
	closed  bool
	badLogs logLimiter // lines about replies that cannot be read
}

// Bad replies are logged at most badReplyBurst per badReplyEvery: anyone
// who may publish on the reply topics could flood the log otherwise.
const (
	badReplyEvery = time.Minute
	badReplyBurst = 5
)

// badReply counts a reply that cannot be read and logs it within bounds.
func (d *downlinkCore) badReply(topic string, err error) {
	d.unmatched.Add(1)
	d.mu.Lock()
	ok, suppressed := d.badLogs.Allow(time.Now())
	d.mu.Unlock()
	if !ok {
		return
	}
	args := []any{"topic", clipText(topic), "err", err}
	if suppressed > 0 {
		args = append(args, "unlogged", suppressed)
	}
	d.log.Warn(d.name+": bad reply", args...)
}

// downlinkConfig is what init needs; the log and the send timeout are
// already defaulted.
type downlinkConfig struct {
	name        string
	client      ClientOptions
	tracker     *command.Tracker
	unmatched   *atomic.Int64
	log         *slog.Logger
	sendTimeout time.Duration
	qos0        bool
	replyFilter string
	onMessage   func(message)
}

// init sets d up and creates its client, subscribed to the replies.
func (d *downlinkCore) init(cfg downlinkConfig) error {
	d.name, d.log, d.sendTimeout, d.qos0 = cfg.name, cfg.log, cfg.sendTimeout, cfg.qos0
	d.badLogs = logLimiter{Interval: badReplyEvery, Burst: badReplyBurst}
	d.tracker, d.unmatched, d.ready = cfg.tracker, cfg.unmatched, make(chan struct{})
	if d.unmatched == nil {
		d.unmatched = new(atomic.Int64)
	}
	if d.tracker == nil {
		d.tracker, d.own = command.New(command.Options{}), true
	}
	cl, err := newClient(clientConfig{
		ClientOptions: cfg.client,
		subs:          []subscription{{topic: cfg.replyFilter, qos: 1}},
		onMessage:     cfg.onMessage,
		onUp:          func() { d.once.Do(func() { close(d.ready) }) },
		onSubscribeError: func(topic string, err error) {
			d.log.Error(d.name+": cannot receive replies", "topic", topic, "err", err)
		},
	})
	if err != nil {
		return err
	}
	d.cl = cl
	return nil
}

// Tracker returns the tracker recording the downlink's commands.
func (d *downlinkCore) Tracker() *command.Tracker { return d.tracker }

// Unmatched returns the number of replies that matched no command.
func (d *downlinkCore) Unmatched() int64 { return d.unmatched.Load() }

// Start connects to the broker and subscribes to replies; it returns once
// subscribed, or with ctx's error (the connection keeps being attempted in
// the background until Close).
func (d *downlinkCore) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New(d.name + ": closed")
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

// Ready returns once the downlink is connected to the broker, or with
// ctx's error. With Deliver it makes the downlink a control.Transport.
func (d *downlinkCore) Ready(ctx context.Context) error {
	if err := d.Start(ctx); err != nil {
		return err
	}
	return d.cl.awaitConnection(ctx)
}

// publish hands a message to the broker, waiting for a connection up to
// the send timeout.
func (d *downlinkCore) publish(ctx context.Context, topic string, payload []byte) error {
	sctx, cancel := context.WithTimeout(ctx, d.sendTimeout)
	defer cancel()
	qos := byte(1)
	if d.qos0 {
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

// dispatch sends c, already submitted to the tracker, with send and
// records the outcome: failed when send fails, otherwise sent.
func (d *downlinkCore) dispatch(ctx context.Context, c command.Command, send func(context.Context) error) (command.Command, error) {
	if err := send(ctx); err != nil {
		d.log.Warn(d.name+": command not sent", "id", c.ID, "device", c.Asset, "err", err)
		c, _ = d.tracker.Fail(c.ID, "not sent: "+err.Error())
		return c, fmt.Errorf("%s: command %s not sent: %w", d.name, c.ID, err)
	}
	sent, err := d.tracker.Sent(c.ID)
	if errors.Is(err, command.ErrFinal) {
		// The reply overtook us, or the command expired meanwhile.
		got, _ := d.tracker.Get(c.ID)
		return got, nil
	}
	return sent, err
}

// reject records a submitted command as rejected for bad.
func (d *downlinkCore) reject(c command.Command, bad error) (command.Command, error) {
	c, _ = d.tracker.Reject(c.ID, bad.Error())
	return c, fmt.Errorf("%s: command %s: %w", d.name, c.ID, bad)
}

// delivered reports the outcome of publishing a command for Deliver.
func (d *downlinkCore) delivered(c command.Command, err error) error {
	if err != nil {
		d.log.Warn(d.name+": command not delivered", "id", c.ID, "device", c.Asset, "err", err)
		return fmt.Errorf("%s: command %s not delivered: %w", d.name, c.ID, err)
	}
	return nil
}

// reply hands a device's reply to the tracker, counting it when it moves
// no command.
func (d *downlinkCore) reply(rep codec.Reply, from command.Target) {
	if _, err := d.tracker.Reply(rep.ID, from, rep.Code, rep.Message, rep.Data); errors.Is(err, command.ErrUnknown) || errors.Is(err, command.ErrMisdirected) {
		d.unmatched.Add(1)
	}
}

// Close disconnects; a tracker created by the downlink stops its
// timeouts. It is idempotent.
func (d *downlinkCore) Close() error {
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
