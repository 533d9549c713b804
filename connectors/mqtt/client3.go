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

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluice-edge/sluice/engine"
)

// client3 is an MQTT 3.1.1 connection (paho.mqtt.golang).
type client3 struct {
	cfg   clientConfig
	state connState

	ctx     context.Context // ends when the client stops
	cancel  context.CancelFunc
	mu      sync.Mutex
	cli     mqtt3.Client
	stopped bool
	flaps   *flapGuard
	delay   atomic.Int64 // ns to wait before the next reconnection
}

func newClient3(cfg clientConfig) *client3 {
	c := &client3{cfg: cfg, flaps: newFlapGuard(cfg.ClientOptions)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.state.init()
	return c
}

func (c *client3) start(context.Context) error {
	o := c.cfg.ClientOptions
	opts := mqtt3.NewClientOptions()
	for _, s := range o.URLs {
		u, err := parseBrokerURL(s)
		if err != nil {
			return err
		}
		opts.AddBroker(u.String())
	}
	opts.SetClientID(o.ClientID).
		SetProtocolVersion(4).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(o.CleanSession).
		SetKeepAlive(o.KeepAlive).
		SetConnectTimeout(o.ConnectTimeout).
		SetWriteTimeout(o.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(o.ReconnectMin).
		SetMaxReconnectInterval(o.ReconnectMax).
		SetOrderMatters(true).
		SetResumeSubs(false).
		SetAutoAckDisabled(c.cfg.manualAck).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			c.cfg.onMessage(message{topic: m.Topic(), payload: m.Payload(), qos: m.Qos(), m3: m})
		}).
		SetOnConnectHandler(func(cli mqtt3.Client) { c.flaps.up(); c.subscribe(cli) }).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			c.state.setDown()
			d := c.flaps.down(err)
			if d.flaps > 0 {
				c.delay.Store(int64(d.delay))
			}
			c.cfg.onDown(d)
		}).
		SetReconnectingHandler(func(mqtt3.Client, *mqtt3.ClientOptions) {
			// After a connection lost at once, wait before reconnecting.
			if d := c.delay.Swap(0); d > 0 {
				engine.Sleep(c.ctx, time.Duration(d))
			}
		})
	opts.SetCustomOpenConnectionFn(func(u *url.URL, co mqtt3.ClientOptions) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), co.ConnectTimeout)
		defer cancel()
		c, err := dialBroker(ctx, u, o.TLS)
		if err != nil {
			return nil, err
		}
		return newReadBufferedConn(c), nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("mqtt: client stopped")
	}
	c.cli = mqtt3.NewClient(opts)
	// With connect retry the token completes only once connected: the
	// connection comes up in the background.
	c.cli.Connect()
	return nil
}

// subscribe makes the subscriptions on a new connection (the handler runs
// in its own goroutine) and then reports the connection up. MQTT 3.1.1
// refusals carry no reason; they are retried a few times, since a broker
// may refuse a subscription whose packet id is the id of a message it is
// resending to a persistent session.
func (c *client3) subscribe(cli mqtt3.Client) {
	if len(c.cfg.subs) > 0 {
		filters := make(map[string]byte, len(c.cfg.subs))
		for _, s := range c.cfg.subs {
			filters[s.topic] = s.qos
		}
		for attempt := 0; ; attempt++ {
			tok := cli.SubscribeMultiple(filters, nil)
			if !tok.WaitTimeout(c.cfg.ConnectTimeout) || tok.Error() != nil {
				c.cfg.Log.Warn("mqtt: subscribe failed", "client", clientTag(c.cfg.ClientID), "err", tok.Error())
				return
			}
			refused := map[string]byte{}
			if st, ok := tok.(*mqtt3.SubscribeToken); ok {
				for topic, code := range st.Result() {
					if code >= 0x80 {
						refused[topic] = code
					}
				}
			}
			if len(refused) > 0 && attempt < subscribeRetries {
				if !engine.Sleep(c.ctx, subscribeBackoff(attempt)) {
					return
				}
				continue
			}
			for topic, code := range refused {
				c.cfg.onSubscribeError(topic, fmt.Errorf("broker refused the subscription (return code 0x%02x)", code))
			}
			break
		}
	}
	c.state.setUp()
	c.cfg.onUp()
}

func (c *client3) awaitConnection(ctx context.Context) error { return c.state.await(ctx) }

func (c *client3) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	c.mu.Lock()
	cli := c.cli
	c.mu.Unlock()
	if cli == nil || !c.state.up.Load() {
		return errNotConnected
	}
	tok := cli.Publish(topic, qos, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *client3) sync(ctx context.Context) error {
	c.mu.Lock()
	cli := c.cli
	c.mu.Unlock()
	if cli == nil || !c.state.up.Load() {
		return errNotConnected
	}
	tok := cli.Unsubscribe(syncFilter)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *client3) stop(context.Context) error {
	c.mu.Lock()
	cli := c.cli
	c.stopped = true
	c.cli = nil
	c.mu.Unlock()
	c.cancel()
	if cli != nil {
		cli.Disconnect(uint((100 * time.Millisecond).Milliseconds()))
		c.state.setDown()
	}
	return nil
}
