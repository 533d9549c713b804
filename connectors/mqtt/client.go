package mqtt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// message is one PUBLISH received from the broker. Its payload belongs to
// the receiver.
type message struct {
	topic   string
	payload []byte
	// dropped is how many payload bytes the light client read and
	// dropped beyond payload, which then holds maxPayload+1 bytes.
	dropped int
	qos     byte
	// Exactly one of these identifies the message for acknowledging it:
	// the MQTT 5 client or the light client, with the generation of the
	// connection the message came on and its packet id; or the MQTT 3.1.1
	// message.
	k5  *client5
	sub *lightClient
	gen uint64
	pid uint16
	m3  mqtt3.Message
}

// forAck returns what ack needs of m, without the topic and payload.
func (m message) forAck() message {
	m.topic, m.payload = "", nil
	return m
}

// ack acknowledges a QoS 1 message on the connection it arrived on. When
// that connection is gone the acknowledgement is dropped and the broker
// delivers the message again on the next connection of a persistent
// session.
func (m *message) ack() {
	switch {
	case m.qos == 0:
	case m.sub != nil:
		m.sub.ackMany([]message{*m})
	case m.k5 != nil:
		m.k5.ack(*m)
	case m.m3 != nil:
		m.m3.Ack()
	}
}

// subscription is one topic filter and its QoS.
type subscription struct {
	topic string
	qos   byte
}

// clientConfig is what a component asks of its connection.
type clientConfig struct {
	ClientOptions
	subs []subscription
	// manualAck defers QoS 1 acknowledgements to message.ack.
	manualAck bool
	// onMessage receives every message, in order, on the client's
	// receiving goroutine; while it blocks the client reads nothing more.
	onMessage func(message)
	// onUp and onDown report the connection going up and down.
	onUp   func()
	onDown func(downInfo)
	// onSubscribeError reports a subscription the broker refused.
	onSubscribeError func(topic string, err error)
	// light picks the source's light client (light.go) over the
	// general ones.
	light bool
	// readPace is, for the light client, the shortest interval between
	// two reads from the socket while packets keep coming (0: no pause).
	readPace time.Duration
	// maxPayload is, for the light client, the most payload bytes of a
	// message kept: of a longer payload it keeps maxPayload+1 and counts
	// the rest in message.dropped (0: defaultMaxPayload).
	maxPayload int
}

// client is a connection that keeps itself up: it connects in the
// background, reconnects with backoff and subscribes again on every
// connection.
type client interface {
	// start begins connecting; it does not wait for the connection.
	start(ctx context.Context) error
	// awaitConnection blocks until the connection is up or ctx ends.
	awaitConnection(ctx context.Context) error
	// publish sends one message; at QoS 1 it returns once the broker has
	// acknowledged it.
	publish(ctx context.Context, topic string, qos byte, payload []byte) error
	// sync makes a round trip to the broker (an unsubscription from a
	// filter nobody subscribes to). Brokers process a connection's packets
	// in order, so when it returns the broker has taken in everything sent
	// before, such as acknowledgements; a disconnection right after cannot
	// overtake them.
	sync(ctx context.Context) error
	// stop disconnects; it is idempotent.
	stop(ctx context.Context) error
}

var errNotConnected = errors.New("mqtt: not connected")

func newClient(cfg clientConfig) (client, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if cfg.onMessage == nil {
		cfg.onMessage = func(message) {}
	}
	if cfg.onUp == nil {
		cfg.onUp = func() {}
	}
	if cfg.onDown == nil {
		cfg.onDown = func(downInfo) {}
	}
	if cfg.onSubscribeError == nil {
		cfg.onSubscribeError = func(string, error) {}
	}
	if cfg.light {
		return newLightClient(cfg), nil
	}
	if cfg.Version == 4 {
		return newClient3(cfg), nil
	}
	return newClient5(cfg), nil
}

// backoff returns the delay before connection attempt n (0 is the first
// attempt after a connection was lost or the very first one): min, then
// doubling up to max, with ±20% jitter.
func backoff(minD, maxD time.Duration) func(int) time.Duration {
	return func(n int) time.Duration {
		if n <= 0 {
			return 0
		}
		d := minD
		for i := 1; i < n && d < maxD; i++ {
			d *= 2
		}
		d = min(d, maxD)
		j := time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
		return max(j, time.Millisecond)
	}
}

// shortConnection is how long a connection must stay up for the
// reconnection backoff to start over: a connection the broker drops sooner
// counts as a failed attempt.
const shortConnection = 10 * time.Second

// downInfo describes a lost connection.
type downInfo struct {
	err error
	// takenOver is set when the broker said another client connected with
	// the same client id (MQTT 5 DISCONNECT, reason 0x8E), or, with MQTT
	// 3.1.1, which gives no reason, when the connection ended within
	// shortConnection of coming up: the mark of two clients fighting over
	// one id.
	takenOver bool
	// protocol is set when the connection ended on a packet from the
	// broker that breaks MQTT (a protocolError).
	protocol bool
	// lived is how long the connection was up.
	lived time.Duration
	// flaps counts the consecutive connections lost within
	// shortConnection of coming up, this one included.
	flaps int
	// delay is the wait before the next connection attempt.
	delay time.Duration
}

// flapGuard keeps connections that are dropped at once — a session taken
// over by another client with the same id, again and again — from
// reconnecting at once forever: each such connection counts as a failed
// attempt, so that the delay before the next one doubles up to
// ReconnectMax.
type flapGuard struct {
	mu        sync.Mutex
	backoff   func(int) time.Duration
	version   int
	upAt      time.Time
	flaps     int
	takenOver bool // the broker said so (MQTT 5)
}

func newFlapGuard(o ClientOptions) *flapGuard {
	return &flapGuard{backoff: backoff(o.ReconnectMin, o.ReconnectMax), version: o.Version}
}

// up records that a connection came up.
func (g *flapGuard) up() {
	g.mu.Lock()
	g.upAt, g.takenOver = time.Now(), false
	g.mu.Unlock()
}

// sessionTakenOver records that the broker ended the connection because
// another client took the session over.
func (g *flapGuard) sessionTakenOver() {
	g.mu.Lock()
	g.takenOver = true
	g.mu.Unlock()
}

// down records that the connection was lost and describes it.
func (g *flapGuard) down(err error) downInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := downInfo{err: err, takenOver: g.takenOver, protocol: isProtocolError(err)}
	if !g.upAt.IsZero() {
		d.lived = time.Since(g.upAt)
	}
	short := d.lived < shortConnection
	if d.takenOver || short {
		g.flaps++
	} else {
		g.flaps = 0
	}
	if g.version == 4 && short && !d.protocol {
		d.takenOver = true
	}
	if d.takenOver && d.err == nil {
		d.err = errors.New("session taken over")
	}
	g.upAt, g.takenOver = time.Time{}, false
	d.flaps = g.flaps
	d.delay = g.backoff(g.flaps)
	return d
}

// wait returns the delay of connection attempt n after a loss (0 is the
// first), counting the connections lost at once as failed attempts.
func (g *flapGuard) wait(n int) time.Duration {
	g.mu.Lock()
	f := g.flaps
	g.mu.Unlock()
	return g.backoff(n + f)
}

// clientTag names a client id in logs without revealing it (an id may be
// kept secret so that no one can take its session over): a prefix of its
// SHA-256.
func clientTag(id string) string {
	h := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(h[:6])
}

// connState tracks whether a connection is up.
type connState struct {
	up   atomic.Bool
	upCh atomic.Pointer[chan struct{}] // closed when the connection comes up
}

func (s *connState) init() {
	ch := make(chan struct{})
	s.upCh.Store(&ch)
}

func (s *connState) setUp() {
	if !s.up.Swap(true) {
		close(*s.upCh.Load())
	}
}

func (s *connState) setDown() {
	if s.up.Swap(false) {
		ch := make(chan struct{})
		s.upCh.Store(&ch)
	}
}

func (s *connState) await(ctx context.Context) error {
	for {
		if s.up.Load() {
			return nil
		}
		ch := *s.upCh.Load()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// syncFilter is the filter sync unsubscribes from.
const syncFilter = "sluice/sync-no-subscription"

// subscribeRetries bounds the retries of a refused subscription.
const subscribeRetries = 8

// subscribeBackoff is the delay before retry n of a refused subscription.
func subscribeBackoff(n int) time.Duration { return 25 * time.Millisecond << min(n, 5) }
