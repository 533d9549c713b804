package mqtt

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BrokerOptions configures an embedded broker.
//
// A broker with no user (neither Users nor Username) is open: any client
// may connect and use every topic. StartBroker refuses to open such a
// broker on an address other than loopback unless AllowAnonymous is set.
// A broker with users requires credentials and checks every publication
// and subscription against the user's rights (BrokerUser).
type BrokerOptions struct {
	// Listen is the TCP address to listen on (default 127.0.0.1:1883;
	// port 0 picks a free port).
	Listen string
	// Users are the accounts clients connect with.
	Users []BrokerUser
	// Username and Password, when set, add one account with every right
	// (BrokerUser.Engine).
	Username, Password string
	// AllowAnonymous admits clients without a user name. With users, they
	// may publish and subscribe anywhere but publish no downlink topic;
	// without users, it allows an open broker on any address.
	AllowAnonymous bool
	// TLS, when set, makes the broker accept TLS connections only. With
	// ClientAuth set to tls.VerifyClientCertIfGiven and ClientCAs, every
	// client but an engine user must present a certificate signed by one
	// of them (mutual TLS).
	TLS *tls.Config
	// Limits bound what clients may hold; zero fields take defaults.
	Limits BrokerLimits
	// Log receives the broker's log; nil discards it.
	Log *slog.Logger
}

// Broker is an MQTT 3.1.1 and 5 broker running in this process, with
// wildcards, shared subscriptions and persistent sessions kept in memory.
type Broker struct {
	srv    *mochi.Server
	ln     *brokerListener
	addr   string
	url    string
	stats  *brokerStats
	auth   *authHook
	retain *retainHook
	log    *slog.Logger

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
	opts.Limits.normalize()
	lim := opts.Limits
	ev := newEventLog(log)
	stats := &brokerStats{}
	accounts := map[string]*account{}
	users := opts.Users
	if opts.Username != "" || opts.Password != "" {
		users = append(slices.Clip(users), BrokerUser{Username: opts.Username, Password: opts.Password, Engine: true})
	}
	for _, u := range users {
		a, err := newAccount(u)
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		if accounts[u.Username] != nil {
			return nil, fmt.Errorf("embedded broker: user %q is configured twice", u.Username)
		}
		accounts[u.Username] = a
	}
	auth := newAuthHook(stats, ev, accounts, keepAliveSeconds(lim.MaxKeepAlive))
	switch {
	case len(users) == 0:
		auth.open = true
		if !opts.AllowAnonymous && !loopback(opts.Listen) {
			return nil, fmt.Errorf("embedded broker: listening on %s without users would let anyone who reaches it read and send "+
				"every message: configure users, or allow anonymous clients explicitly", opts.Listen)
		}
	case opts.AllowAnonymous:
		auth.anonymous = &anonymousAccess
	}
	if opts.TLS != nil && opts.TLS.ClientCAs != nil && opts.TLS.ClientAuth != tls.NoClientCert {
		auth.requireCert = true
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	addr := ln.Addr().String()
	scheme := "tcp://"
	if opts.TLS != nil {
		scheme = "tls://"
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumInflight = uint16(lim.MaxInflight)
	caps.MaximumClientWritesPending = int32(lim.MaxQueued)
	caps.MaximumPacketSize = uint32(lim.MaxPacketSize)
	srv := mochi.New(&mochi.Options{Logger: slog.New(&logFilter{next: log.Handler(), ev: ev}), Capabilities: caps})
	auth.srv = srv
	retain := &retainHook{srv: srv, stats: stats, ev: ev, maxCount: int64(lim.MaxRetained), maxBytes: lim.MaxRetainedBytes,
		sizes: map[string]int64{}}
	bl := &brokerListener{ln: ln, tls: opts.TLS, table: newConnTable(lim, stats), connectTimeout: lim.ConnectTimeout,
		stats: stats, ev: ev, srv: srv}
	err = srv.AddHook(auth, nil)
	if err == nil {
		err = srv.AddHook(&deliveryHook{srv: srv, limit: 5 * time.Second}, nil)
	}
	if err == nil {
		err = srv.AddHook(retain, nil)
	}
	if err == nil {
		err = srv.AddListener(bl)
	}
	if err == nil {
		err = srv.Serve()
	}
	if err != nil {
		_ = ln.Close()
		_ = srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	switch {
	case auth.open:
		log.Warn("mqtt broker: no users configured: any client that reaches it may read and send every message, commands included",
			"listen", addr)
	case auth.anonymous != nil:
		log.Warn("mqtt broker: anonymous clients allowed: they may read every message and publish every topic but commands",
			"listen", addr)
	}
	return &Broker{srv: srv, addr: addr, url: scheme + addr, stats: stats, auth: auth, ln: bl, retain: retain, log: log}, nil
}

// loopback reports whether the listen address binds loopback only.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// URL returns the broker's URL: tcp://host:port, or tls://host:port.
func (b *Broker) URL() string { return b.url }

// Stats returns what the broker counted since it started.
func (b *Broker) Stats() BrokerStats {
	s := b.stats
	return BrokerStats{
		Connections:            s.connections.Load(),
		Pending:                s.pending.Load(),
		AuthRefused:            s.authRefused.Load(),
		AuthThrottled:          s.authThrottled.Load(),
		ACLRefused:             s.aclRefused.Load(),
		ConnectionsRefused:     s.connectionsRefused.Load(),
		PendingRefused:         s.pendingRefused.Load(),
		UserConnectionsRefused: s.userConnectionsRefused.Load(),
		ConnectTimeouts:        s.connectTimeouts.Load(),
		Oversized:              s.oversized.Load(),
		RetainedRefused:        s.retainedRefused.Load(),
		TakeoversRefused:       s.takeoversRefused.Load(),
		Dropped:                b.retain.dropped.Load(),
		Retained:               b.retain.countAt.Load(),
		RetainedBytes:          b.retain.bytesAt.Load(),
	}
}

// Close disconnects every client and stops the broker, logging its
// counters. Sessions are lost. It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.ln.closePending()
	err := b.srv.Close()
	s := b.Stats()
	b.log.Info("mqtt broker: stopped", "addr", b.addr, "auth_refused", s.AuthRefused, "auth_throttled", s.AuthThrottled, "acl_refused", s.ACLRefused,
		"connections_refused", s.ConnectionsRefused, "pending_refused", s.PendingRefused,
		"user_connections_refused", s.UserConnectionsRefused, "connect_timeouts", s.ConnectTimeouts, "oversized", s.Oversized,
		"retained_refused", s.RetainedRefused, "takeovers_refused", s.TakeoversRefused, "dropped", s.Dropped)
	return err
}

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
// with the settings a component declared for addr (embeddedOptions) if
// needed, and a function that lets go of it.
func acquireBroker(addr string, log *slog.Logger) (*Broker, func(), error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sb := sharedBrokers[addr]
	if sb == nil {
		opts := embeddedOptions(addr)
		opts.Log = log
		b, err := StartBroker(opts)
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
