package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/sluice-edge/sluice/engine"
)

// client5 is an MQTT 5 connection (paho.golang's autopaho).
type client5 struct {
	cfg   clientConfig
	state connState

	ctx     context.Context // ends when the client stops
	cancel  context.CancelFunc
	mu      sync.Mutex
	cm      *autopaho.ConnectionManager
	stopped bool

	// Acknowledgements are written straight to the session state, in the
	// order the caller makes them, instead of going through paho's manual
	// acknowledgement tracker (which scans every unacknowledged message on
	// each one and sends in batches).
	ackMu sync.Mutex    // held while acknowledging and while advancing gen
	gen   atomic.Uint64 // connection generation, advanced when one ends
	sess  *deferringSession
	flaps *flapGuard
}

// deferringSession is paho's session state, except that with defer set it
// ignores paho's acknowledgement of QoS 1 messages (made as soon as the
// handler returns): client5.ack makes it later. It also tells the flap
// guard when the broker says the session was taken over.
type deferringSession struct {
	*state.State
	deferAcks bool
	flaps     *flapGuard
}

// ConnectionLost is called with the broker's DISCONNECT, before the
// connection is reported down.
func (s *deferringSession) ConnectionLost(dp *packets.Disconnect) error {
	if dp != nil && dp.ReasonCode == packets.DisconnectSessionTakenOver {
		s.flaps.sessionTakenOver()
	}
	return s.State.ConnectionLost(dp)
}

func (s *deferringSession) Ack(pb *packets.Publish) error {
	if s.deferAcks && pb.QoS == 1 {
		return nil
	}
	return s.State.Ack(pb)
}

// ack acknowledges a message if it came on the current connection; on a
// later connection the broker delivers it again anyway, and its packet id
// may by then name another message.
func (c *client5) ack(m message) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if m.gen == c.gen.Load() {
		_ = c.sess.State.Ack(&packets.Publish{PacketID: m.pid, QoS: m.qos})
	}
}

// cappedPinger is paho's pinger, pinging at keep_alive when an MQTT 5
// broker's Server Keep Alive is longer, as the light client does (see
// lightClient.handshake): the broker's value alone may be 18 hours.
type cappedPinger struct {
	*paho.DefaultPinger
	max uint16 // keep_alive, in seconds
}

// Run pings at the shorter of keepAlive, the broker's interval when it
// sets one, and keep_alive.
func (p *cappedPinger) Run(ctx context.Context, conn net.Conn, keepAlive uint16) error {
	if keepAlive == 0 || keepAlive > p.max {
		keepAlive = p.max
	}
	return p.DefaultPinger.Run(ctx, conn, keepAlive)
}

func newClient5(cfg clientConfig) *client5 {
	c := &client5{cfg: cfg, flaps: newFlapGuard(cfg.ClientOptions)}
	c.sess = &deferringSession{State: state.NewInMemory(), deferAcks: cfg.manualAck, flaps: c.flaps}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.state.init()
	return c
}

func (c *client5) start(ctx context.Context) error {
	urls := make([]*url.URL, 0, len(c.cfg.URLs))
	for _, s := range c.cfg.URLs {
		u, err := parseBrokerURL(s)
		if err != nil {
			return err
		}
		urls = append(urls, u)
	}
	o := c.cfg.ClientOptions
	expiry := uint32(0)
	if !o.CleanSession {
		expiry = uint32(min(o.SessionExpiry/time.Second, 1<<32-1))
	}
	recvMax := uint16(o.ReceiveMaximum)
	ac := autopaho.ClientConfig{
		ServerUrls:                    urls,
		TlsCfg:                        o.TLS,
		KeepAlive:                     uint16(max(1, min(o.KeepAlive/time.Second, 65535))),
		CleanStartOnInitialConnection: o.CleanSession,
		SessionExpiryInterval:         expiry,
		ReconnectBackoff:              c.flaps.wait,
		ConnectTimeout:                o.ConnectTimeout,
		ConnectUsername:               o.Username,
		ConnectPassword:               []byte(o.Password),
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			c, err := dialBroker(ctx, u, o.TLS)
			if err != nil {
				return nil, err
			}
			return newPacketConn(c), nil
		},
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &recvMax
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			c.flaps.up()
			// Subscribing waits for the broker, and this callback must not
			// block.
			go c.subscribe(cm)
		},
		OnConnectionDown: func() bool {
			c.ackMu.Lock()
			c.gen.Add(1)
			c.ackMu.Unlock()
			c.state.setDown()
			c.cfg.onDown(c.flaps.down(nil))
			return true
		},
		OnConnectError: func(err error) {
			o.Log.Warn("mqtt: connection attempt failed", "client", clientTag(o.ClientID), "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:    o.ClientID,
			Session:     c.sess,
			PingHandler: &cappedPinger{DefaultPinger: paho.NewDefaultPinger(), max: uint16(max(1, min(o.KeepAlive/time.Second, 65535)))},
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					p := pr.Packet
					c.cfg.onMessage(message{topic: p.Topic, payload: p.Payload, qos: p.QoS, k5: c, gen: c.gen.Load(), pid: p.PacketID})
					return true, nil
				},
			},
		},
	}
	if len(c.cfg.subs) == 0 {
		ac.OnConnectionUp = func(*autopaho.ConnectionManager, *paho.Connack) {
			c.flaps.up()
			c.state.setUp()
			c.cfg.onUp()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("mqtt: client stopped")
	}
	cm, err := autopaho.NewConnection(context.WithoutCancel(ctx), ac)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	c.cm = cm
	return nil
}

// subscribe makes the subscriptions on a new connection and then reports
// the connection up. A broker may refuse a subscription whose packet id
// is the id of a message it is resending to a persistent session (reason
// 0x91); such refusals are retried.
func (c *client5) subscribe(cm *autopaho.ConnectionManager) {
	s := &paho.Subscribe{}
	for _, sub := range c.cfg.subs {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: sub.topic, QoS: sub.qos})
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
		ack, err := cm.Subscribe(ctx, s)
		cancel()
		if ack == nil {
			// The connection dropped meanwhile (the next one subscribes),
			// or the broker cannot take such a subscription at all.
			c.cfg.Log.Warn("mqtt: subscribe failed", "client", clientTag(c.cfg.ClientID), "err", err)
			if errors.Is(err, paho.ErrInvalidArguments) {
				for _, sub := range c.cfg.subs {
					c.cfg.onSubscribeError(sub.topic, err)
				}
			}
			return
		}
		retry, failed := false, false
		for _, code := range ack.Reasons {
			retry = retry || code == 0x91
			failed = failed || code >= 0x80
		}
		if failed && retry && attempt < subscribeRetries {
			if !engine.Sleep(c.ctx, subscribeBackoff(attempt)) {
				return
			}
			continue
		}
		for i, code := range ack.Reasons {
			if code >= 0x80 && i < len(c.cfg.subs) {
				c.cfg.onSubscribeError(c.cfg.subs[i].topic, fmt.Errorf("broker refused the subscription (reason code 0x%02x)", code))
			}
		}
		break
	}
	c.state.setUp()
	c.cfg.onUp()
}

func (c *client5) awaitConnection(ctx context.Context) error { return c.state.await(ctx) }

func (c *client5) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	c.mu.Lock()
	cm := c.cm
	c.mu.Unlock()
	if cm == nil {
		return errNotConnected
	}
	_, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if errors.Is(err, autopaho.ConnectionDownError) {
		return errNotConnected
	}
	return err
}

func (c *client5) sync(ctx context.Context) error {
	c.mu.Lock()
	cm := c.cm
	c.mu.Unlock()
	if cm == nil {
		return errNotConnected
	}
	ack, err := cm.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{syncFilter}})
	if ack != nil {
		return nil // answered, whatever the answer
	}
	return err
}

func (c *client5) stop(ctx context.Context) error {
	c.mu.Lock()
	cm := c.cm
	c.stopped = true
	c.cm = nil
	c.mu.Unlock()
	c.cancel()
	if cm == nil {
		return nil
	}
	err := cm.Disconnect(ctx)
	c.state.setDown()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
