package devsim

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// bufferedConn gathers the packets written to a connection and sends them
// in as few writes as the reader of the other end allows: a flusher writes
// out whatever has accumulated each time it is woken. Publishing many
// small messages then costs a fraction of a system call each. It
// implements sync.Locker so that paho writes each packet whole.
type bufferedConn struct {
	net.Conn
	pkt sync.Mutex // held by paho while it writes one packet

	mu     sync.Mutex
	bw     *bufio.Writer
	err    error
	kick   chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newBufferedConn(c net.Conn) *bufferedConn {
	b := &bufferedConn{Conn: c, bw: bufio.NewWriterSize(c, 64<<10), kick: make(chan struct{}, 1), closed: make(chan struct{})}
	go b.flusher()
	return b
}

func (b *bufferedConn) Lock()   { b.pkt.Lock() }
func (b *bufferedConn) Unlock() { b.pkt.Unlock() }

func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return 0, b.err
	}
	n, err := b.bw.Write(p)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return n, err
}

func (b *bufferedConn) flusher() {
	for {
		select {
		case <-b.kick:
		case <-b.closed:
			return
		}
		b.mu.Lock()
		if b.err == nil && b.bw.Buffered() > 0 {
			b.err = b.bw.Flush()
		}
		b.mu.Unlock()
	}
}

func (b *bufferedConn) Close() error {
	b.once.Do(func() {
		close(b.closed)
		b.mu.Lock()
		if b.err == nil {
			_ = b.bw.Flush()
			b.err = net.ErrClosed
		}
		b.mu.Unlock()
	})
	return b.Conn.Close()
}

// conn is one MQTT 5 connection of the simulator.
type conn struct {
	cm *autopaho.ConnectionManager
	up chan struct{}
	mu sync.Mutex
	// recvMax is how many QoS 1 messages the broker takes before it
	// acknowledges one (its Receive Maximum).
	recvMax int
}

// dial connects and subscribes to subs (QoS 1); it returns once
// subscribed. onMessage runs on the connection's receiving goroutine.
// A plain connection is paho's own, without gathered writes.
func dial(ctx context.Context, cfg *Config, clientID string, subs []string, plain bool, onMessage func(topic string, payload []byte)) (*conn, error) {
	var urls []*url.URL
	for _, s := range cfg.URLs {
		if !strings.Contains(s, "://") {
			s = "tcp://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("devsim: bad broker url %q", s)
		}
		urls = append(urls, u)
	}
	c := &conn{up: make(chan struct{}), recvMax: 65535}
	var once sync.Once
	var lastMu sync.Mutex
	var lastErr error // of the last failed connection attempt
	subscribed := make(chan error, 1)
	ac := autopaho.ClientConfig{
		ServerUrls:      urls,
		TlsCfg:          cfg.TLS,
		KeepAlive:       30,
		ConnectTimeout:  10 * time.Second,
		ConnectUsername: cfg.Username,
		ConnectPassword: []byte(cfg.Password),
		ReconnectBackoff: func(n int) time.Duration {
			return min(time.Duration(n)*100*time.Millisecond, 5*time.Second)
		},
		CleanStartOnInitialConnection: true,
		OnConnectError: func(err error) {
			lastMu.Lock()
			lastErr = err
			lastMu.Unlock()
		},
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			var d net.Dialer
			switch strings.ToLower(u.Scheme) {
			case "tls", "ssl", "mqtts":
				td := tls.Dialer{NetDialer: &d, Config: cfg.TLS}
				nc, err := td.DialContext(ctx, "tcp", u.Host)
				if err != nil {
					return nil, err
				}
				return newBufferedConn(nc), nil
			case "tcp", "mqtt", "":
				nc, err := d.DialContext(ctx, "tcp", u.Host)
				if err != nil {
					return nil, err
				}
				return newBufferedConn(nc), nil
			}
			return nil, fmt.Errorf("devsim: unsupported scheme %q", u.Scheme)
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			if ca != nil && ca.Properties != nil && ca.Properties.ReceiveMaximum != nil {
				c.setRecvMax(int(*ca.Properties.ReceiveMaximum))
			}
			go func() {
				if len(subs) > 0 {
					s := &paho.Subscribe{}
					for _, t := range subs {
						s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: t, QoS: 1})
					}
					sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := cm.Subscribe(sctx, s)
					cancel()
					if err != nil {
						select {
						case subscribed <- err:
						default:
						}
						return
					}
				}
				once.Do(func() { close(c.up) })
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: clientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					if onMessage != nil {
						onMessage(pr.Packet.Topic, pr.Packet.Payload)
					}
					return true, nil
				},
			},
		},
	}
	if plain {
		ac.AttemptConnection = nil
	}
	cm, err := autopaho.NewConnection(context.WithoutCancel(ctx), ac)
	if err != nil {
		return nil, fmt.Errorf("devsim: %w", err)
	}
	c.cm = cm
	select {
	case <-c.up:
		return c, nil
	case err := <-subscribed:
		c.close()
		return nil, fmt.Errorf("devsim: subscribing: %w", err)
	case <-ctx.Done():
		c.close()
		lastMu.Lock()
		defer lastMu.Unlock()
		return nil, &connectError{ctx: ctx.Err(), last: lastErr}
	}
}

// connectError is a connection that was not up when its context ended:
// it is the context's error, and last is the error of the last failed
// attempt (nil when none failed, such as a broker that does not answer).
type connectError struct{ ctx, last error }

func (e *connectError) Error() string {
	if e.last == nil {
		return "devsim: " + e.ctx.Error()
	}
	return fmt.Sprintf("devsim: %v (last attempt: %v)", e.ctx, e.last)
}

// Unwrap returns the context's error, so that errors.Is(err,
// context.Canceled) still holds.
func (e *connectError) Unwrap() error { return e.ctx }

func (c *conn) setRecvMax(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recvMax = max(1, n)
}

// receiveMaximum returns the broker's Receive Maximum.
func (c *conn) receiveMaximum() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recvMax
}

// publish sends one message; at QoS 1 it waits for the broker's
// acknowledgement.
func (c *conn) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	_, err := c.cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if errors.Is(err, autopaho.ConnectionDownError) {
		// Wait for the connection to come back rather than spin.
		if werr := c.cm.AwaitConnection(ctx); werr != nil {
			return werr
		}
	}
	return err
}

func (c *conn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.cm.Disconnect(ctx)
}
