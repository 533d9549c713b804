package mqtt

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BrokerOptions configures an embedded broker.
type BrokerOptions struct {
	// Listen is the TCP address to listen on (default 127.0.0.1:1883;
	// port 0 picks a free port).
	Listen string
	// Username and Password, when set, are required of every client;
	// otherwise any client may connect.
	Username, Password string
	// TLS, when set, makes the broker accept TLS connections only.
	TLS *tls.Config
	// Log receives the broker's log; nil discards it.
	Log *slog.Logger
}

// Broker is an MQTT 3.1.1 and 5 broker running in this process, with
// wildcards, shared subscriptions and persistent sessions kept in memory.
type Broker struct {
	srv  *mochi.Server
	addr string
	url  string

	mu     sync.Mutex
	closed bool
}

// StartBroker starts a broker listening on opts.Listen; it returns once
// the broker accepts connections.
func StartBroker(opts BrokerOptions) (*Broker, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:1883"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	addr := ln.Addr().String()
	scheme := "tcp://"
	if opts.TLS != nil {
		ln = tls.NewListener(ln, opts.TLS)
		scheme = "tls://"
	}
	caps := mochi.NewDefaultServerCapabilities()
	// Hold as many unacknowledged QoS 1 messages per client as a client
	// may allow (the source allows 65535), and queue as many for a client
	// that reads slowly, before dropping.
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 65536
	srv := mochi.New(&mochi.Options{Logger: log, Capabilities: caps})
	err = srv.AddHook(&authHook{user: opts.Username, password: opts.Password}, nil)
	if err == nil {
		err = srv.AddHook(&deliveryHook{srv: srv, limit: 5 * time.Second}, nil)
	}
	if err == nil {
		err = srv.AddListener(listeners.NewNet("sluice", ln))
	}
	if err == nil {
		err = srv.Serve()
	}
	if err != nil {
		_ = ln.Close()
		_ = srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &Broker{srv: srv, addr: addr, url: scheme + addr}, nil
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// URL returns the broker's URL: tcp://host:port, or tls://host:port.
func (b *Broker) URL() string { return b.url }

// Close disconnects every client and stops the broker. Sessions are lost.
// It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return b.srv.Close()
}

// authHook lets clients with the configured credentials (any client when
// none are configured) connect and use every topic.
type authHook struct {
	mochi.HookBase
	user, password string
}

func (h *authHook) ID() string { return "sluice-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func (h *authHook) OnConnectAuthenticate(_ *mochi.Client, pk packets.Packet) bool {
	if h.user == "" && h.password == "" {
		return true
	}
	return subtle.ConstantTimeCompare(pk.Connect.Username, []byte(h.user)) == 1 &&
		subtle.ConstantTimeCompare(pk.Connect.Password, []byte(h.password)) == 1
}

func (h *authHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// deliveryHook keeps QoS 1 messages from being lost or stuck in the
// broker, around two weak spots of its delivery:
//
//   - While a client resumes a persistent session, a message published
//     meanwhile could be queued on the old connection after its messages
//     were moved to the new one, and be lost. Publications take a gate
//     shared, from OnPublish until they have been handed to every
//     subscriber (OnPublished, or OnDisconnect when the publisher's
//     connection failed meanwhile); a resuming connection takes it
//     exclusively from OnSessionEstablish to OnSessionEstablished, or for
//     at most limit should the connection fail in between.
//   - When it enforces a client's Receive Maximum, the broker can deadlock
//     (a read lock taken twice while a publication waits to write) and
//     sends messages beyond the maximum without keeping them for
//     redelivery. The hook switches that enforcement off for every client:
//     messages go out as they come, and a slow client holds the broker
//     back through TCP and its write queue.
type deliveryHook struct {
	mochi.HookBase
	srv   *mochi.Server
	limit time.Duration

	mu      sync.RWMutex
	readers sync.Map // *mochi.Client holding mu shared
	writers sync.Map // *mochi.Client -> func() releasing mu
}

func (g *deliveryHook) ID() string { return "sluice-delivery" }

func (g *deliveryHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnPublish,
		mochi.OnPublished, mochi.OnDisconnect}, []byte{b})
}

func (g *deliveryHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if _, resuming := g.srv.Clients.Get(cl.ID); !resuming {
		return
	}
	g.mu.Lock()
	var once sync.Once
	release := func() { once.Do(g.mu.Unlock) }
	t := time.AfterFunc(g.limit, release)
	g.writers.Store(cl, func() { t.Stop(); release() })
}

func (g *deliveryHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	// The client's packets are read only after this: no delivery has yet
	// looked at the quota.
	cl.State.Inflight.ResetSendQuota(0)
	g.releaseWriter(cl)
}

func (g *deliveryHook) releaseWriter(cl *mochi.Client) {
	if f, ok := g.writers.LoadAndDelete(cl); ok {
		f.(func())()
	}
}

func (g *deliveryHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	g.mu.RLock()
	g.readers.Store(cl, struct{}{})
	return pk, nil
}

func (g *deliveryHook) OnPublished(cl *mochi.Client, _ packets.Packet) { g.releaseReader(cl) }

func (g *deliveryHook) releaseReader(cl *mochi.Client) {
	if _, ok := g.readers.LoadAndDelete(cl); ok {
		g.mu.RUnlock()
	}
}

func (g *deliveryHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	g.releaseReader(cl)
	g.releaseWriter(cl)
}

// Shared embedded brokers: the components of one process that name the
// same listen address share one broker, started by the first and stopped
// when the last lets go.
var (
	sharedMu      sync.Mutex
	sharedBrokers = map[string]*sharedBroker{}
)

type sharedBroker struct {
	b    *Broker
	refs int
}

// acquireBroker returns the shared broker listening on addr, starting it
// if needed, and a function that lets go of it.
func acquireBroker(addr string, log *slog.Logger) (*Broker, func(), error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sb := sharedBrokers[addr]
	if sb == nil {
		b, err := StartBroker(BrokerOptions{Listen: addr, Log: log})
		if err != nil {
			return nil, nil, err
		}
		sb = &sharedBroker{b: b}
		sharedBrokers[addr] = sb
	}
	sb.refs++
	var once sync.Once
	return sb.b, func() {
		once.Do(func() {
			sharedMu.Lock()
			defer sharedMu.Unlock()
			sb.refs--
			if sb.refs == 0 {
				delete(sharedBrokers, addr)
				_ = sb.b.Close()
			}
		})
	}, nil
}

// Subscribed reports whether any client subscribes to a filter matching
// topic, so that a publisher started next to a pipeline can wait until the
// pipeline listens.
func (b *Broker) Subscribed(topic string) bool {
	s := b.srv.Topics.Subscribers(topic)
	return len(s.Subscriptions) > 0 || len(s.Shared) > 0
}
