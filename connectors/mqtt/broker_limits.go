package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BrokerLimits bound what clients of the embedded broker may hold. Zero
// fields take the defaults noted on each.
type BrokerLimits struct {
	// MaxPacketSize is the largest MQTT packet a client may send, in bytes
	// (default 2 MiB). A larger packet closes the connection as soon as its
	// header is read, before its body is.
	MaxPacketSize int
	// MaxConnections is how many clients that completed CONNECT may be
	// connected at once, engine users (BrokerUser.Engine) not counted
	// (default 1000). Beyond it a CONNECT is refused with "server
	// unavailable", unless it takes over a connected session of the same
	// user.
	MaxConnections int
	// MaxPendingConnections is how many connections may be open at once
	// that have not completed CONNECT: TLS handshake, CONNECT packet and
	// its authentication (default 64). Beyond it new connections are
	// closed at once, before a byte is read, so that sockets sending
	// nothing cannot use up MaxConnections.
	MaxPendingConnections int
	// MaxPendingPerIP is how many of those one remote address may hold
	// (an IPv6 address counts by its /64 prefix; default 8).
	MaxPendingPerIP int
	// MaxConnectionsPerUser is how many connections one user name may hold
	// at once (default 4); engine users and anonymous clients are not
	// bounded by it. A CONNECT beyond it is refused with "server
	// unavailable", unless it takes over a connected session of the same
	// user.
	MaxConnectionsPerUser int
	// MaxRetained and MaxRetainedBytes bound the retained messages: their
	// count (default 10,000) and the bytes of their topics and payloads
	// (default 16 MiB). A retained message beyond them is delivered but not
	// retained, and the topic's previous retained message is cleared.
	MaxRetained      int
	MaxRetainedBytes int64
	// MaxInflight is how many unacknowledged QoS 1 and 2 messages the
	// broker keeps per client (default 65535, the most MQTT allows);
	// beyond it messages to that client are dropped.
	MaxInflight int
	// MaxQueued is how many messages wait to be written to one client
	// (default 65536); beyond it messages to that client are dropped.
	MaxQueued int
	// ConnectTimeout closes connections that have not completed the TLS
	// handshake and sent CONNECT within it (default 10s).
	ConnectTimeout time.Duration
	// MaxKeepAlive replaces a client's keep-alive when it is longer or
	// disabled (default 5m): a silent connection is closed after 1.5 times
	// the keep-alive.
	MaxKeepAlive time.Duration
}

// Default limits of the embedded broker.
const (
	DefaultBrokerMaxPacketSize    = 2 << 20
	DefaultBrokerMaxConnections   = 1000
	DefaultBrokerMaxPending       = 64
	DefaultBrokerMaxPendingPerIP  = 8
	DefaultBrokerMaxConnsPerUser  = 4
	DefaultBrokerMaxRetained      = 10000
	DefaultBrokerMaxRetainedBytes = 16 << 20
	DefaultBrokerMaxInflight      = 65535
	DefaultBrokerMaxQueued        = 65536
	DefaultBrokerConnectTimeout   = 10 * time.Second
	DefaultBrokerMaxKeepAlive     = 5 * time.Minute
)

func (l *BrokerLimits) normalize() {
	setDefault := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDefault(&l.MaxPacketSize, DefaultBrokerMaxPacketSize)
	setDefault(&l.MaxConnections, DefaultBrokerMaxConnections)
	setDefault(&l.MaxPendingConnections, DefaultBrokerMaxPending)
	setDefault(&l.MaxPendingPerIP, DefaultBrokerMaxPendingPerIP)
	setDefault(&l.MaxConnectionsPerUser, DefaultBrokerMaxConnsPerUser)
	setDefault(&l.MaxRetained, DefaultBrokerMaxRetained)
	setDefault(&l.MaxInflight, DefaultBrokerMaxInflight)
	setDefault(&l.MaxQueued, DefaultBrokerMaxQueued)
	l.MaxInflight = min(l.MaxInflight, 65535)
	l.MaxPacketSize = min(l.MaxPacketSize, 268435455+5) // the largest MQTT packet
	if l.MaxRetainedBytes <= 0 {
		l.MaxRetainedBytes = DefaultBrokerMaxRetainedBytes
	}
	if l.ConnectTimeout <= 0 {
		l.ConnectTimeout = DefaultBrokerConnectTimeout
	}
	if l.MaxKeepAlive <= 0 {
		l.MaxKeepAlive = DefaultBrokerMaxKeepAlive
	}
}

// BrokerStats counts what the embedded broker refused since it started.
type BrokerStats struct {
	// Connections is the number of clients connected now (that completed
	// CONNECT), engine users included.
	Connections int64
	// Pending is the number of connections open now that have not
	// completed CONNECT.
	Pending int64
	// AuthRefused counts connections refused for their credentials (or a
	// missing client certificate).
	AuthRefused int64
	// AuthThrottled counts connections refused without checking their
	// password: their address was backing off after failed logins, or no
	// password check was free before their ConnectTimeout.
	AuthThrottled int64
	// ACLRefused counts publications, subscriptions and will topics the
	// ACL refused.
	ACLRefused int64
	// ConnectionsRefused counts CONNECTs refused because MaxConnections
	// clients were connected.
	ConnectionsRefused int64
	// PendingRefused counts connections closed at accept because
	// MaxPendingConnections, or MaxPendingPerIP from their address, had
	// not completed CONNECT.
	PendingRefused int64
	// UserConnectionsRefused counts CONNECTs refused because their user
	// held MaxConnectionsPerUser connections.
	UserConnectionsRefused int64
	// ConnectTimeouts counts connections closed for not sending CONNECT
	// within ConnectTimeout, or for staying silent beyond the keep-alive.
	ConnectTimeouts int64
	// Oversized counts connections closed for a packet above MaxPacketSize.
	Oversized int64
	// RetainedRefused counts retained messages not retained for the limits.
	RetainedRefused int64
	// TakeoversRefused counts connections refused because their client id
	// belonged to another user's session.
	TakeoversRefused int64
	// Dropped counts messages dropped because a client's queue was full.
	Dropped int64
	// Retained and RetainedBytes are what the retained messages hold now.
	Retained, RetainedBytes int64
}

// counter is one statistic.
type counter = atomic.Int64

type brokerStats struct {
	connections, pending, authRefused, authThrottled, aclRefused, connectionsRefused, pendingRefused, userConnectionsRefused,
	connectTimeouts, oversized, retainedRefused, takeoversRefused counter
}

// eventLog logs refusals with at most eventBurst lines per kind every
// eventInterval, then one line with the number left out.
type eventLog struct {
	log *slog.Logger
	mu  sync.Mutex
	by  map[string]*logLimiter
}

const (
	eventInterval = 10 * time.Second
	eventBurst    = 10
)

func newEventLog(log *slog.Logger) *eventLog {
	return &eventLog{log: log, by: map[string]*logLimiter{}}
}

// warn logs msg at WARN unless lines of this kind are over their rate.
func (e *eventLog) warn(kind, msg string, args ...any) {
	if e.allow(kind) {
		e.log.Warn(msg, args...)
	}
}

// brokerConn is a connection of the broker's listener: it keeps its
// place in the connection table until closed, and the TLS connection for
// the certificate check.
type brokerConn struct {
	net.Conn
	tls   *tls.Conn
	table *connTable
	// addr is the remote address the table counts by (addrKey); local
	// tells that it is this host's (sameHost).
	addr  string
	local bool
	// deadline is when the connection must have completed CONNECT.
	deadline time.Time
	// ended is closed once the broker is done with the connection.
	ended chan struct{}
	// Guarded by table.mu.
	state   brokerConnState
	user    string
	bounded bool // counts against MaxConnections
	once    sync.Once
}

type brokerConnState uint8

const (
	connPending brokerConnState = iota
	connEstablished
	connReleased
)

func (c *brokerConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.table.release(c) })
	return err
}

// connTable counts the broker's connections: those still to complete
// CONNECT (pending), overall and per remote address, and the connected
// clients, overall and per user.
type connTable struct {
	maxConns, maxPending, maxPendingPerIP, maxPerUser int
	stats                                             *brokerStats

	mu sync.Mutex
	// pending counts the pending connections from other hosts and from
	// this one (the process's own components): each is held to
	// maxPending, so that other hosts cannot keep the process's own out.
	pending [2]int
	byAddr  map[string]int // pending connections per remote address, other hosts only
	waiting map[*brokerConn]struct{}
	bounded int            // connected clients counting against maxConns
	byUser  map[string]int // connections per user held to maxPerUser
}

func newConnTable(lim BrokerLimits, stats *brokerStats) *connTable {
	return &connTable{maxConns: lim.MaxConnections, maxPending: lim.MaxPendingConnections,
		maxPendingPerIP: lim.MaxPendingPerIP, maxPerUser: lim.MaxConnectionsPerUser, stats: stats,
		byAddr: map[string]int{}, byUser: map[string]int{}, waiting: map[*brokerConn]struct{}{}}
}

// accept counts a new connection as pending, or returns the limit that
// refuses it.
func (t *connTable) accept(c *brokerConn) (refusal string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.pending[index(c.local)] >= t.maxPending:
		return "max_pending_connections"
	case !c.local && t.byAddr[c.addr] >= t.maxPendingPerIP:
		return "max_pending_per_ip"
	}
	t.pending[index(c.local)]++
	if !c.local {
		t.byAddr[c.addr]++
	}
	c.state = connPending
	t.waiting[c] = struct{}{}
	t.stats.pending.Add(1)
	return ""
}

// establish moves a pending connection whose CONNECT was admitted to the
// connected clients of user, or returns the limit that refuses it. limited
// holds it to MaxConnections, and perUser to MaxConnectionsPerUser; a
// takeover of a connected session of the same user, which closes that
// connection, passes both.
func (t *connTable) establish(c *brokerConn, user string, limited, perUser, takeover bool) (refusal string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.state != connPending {
		return ""
	}
	switch {
	case limited && !takeover && t.bounded >= t.maxConns:
		return "max_connections"
	case perUser && !takeover && t.byUser[user] >= t.maxPerUser:
		return "max_connections_per_user"
	}
	t.leavePending(c)
	c.state = connEstablished
	c.bounded = limited
	if limited {
		t.bounded++
	}
	if perUser {
		c.user = user
		t.byUser[user]++
	}
	t.stats.connections.Add(1)
	return ""
}

func (t *connTable) leavePending(c *brokerConn) {
	delete(t.waiting, c)
	t.pending[index(c.local)]--
	if !c.local {
		if t.byAddr[c.addr]--; t.byAddr[c.addr] <= 0 {
			delete(t.byAddr, c.addr)
		}
	}
	t.stats.pending.Add(-1)
}

// release lets go of a closed connection's place.
func (t *connTable) release(c *brokerConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch c.state {
	case connPending:
		t.leavePending(c)
	case connEstablished:
		t.stats.connections.Add(-1)
		if c.bounded {
			t.bounded--
		}
		if c.user != "" {
			if t.byUser[c.user]--; t.byUser[c.user] <= 0 {
				delete(t.byUser, c.user)
			}
		}
	}
	c.state = connReleased
}

// index is 1 for true, 0 for false.
func index(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sameHost reports whether a connection comes from this host: from the
// very address it reached (127.0.0.1 to 127.0.0.1, as the process's own
// components connect).
func sameHost(conn net.Conn) bool {
	r, ok := conn.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	l, ok := conn.LocalAddr().(*net.TCPAddr)
	return ok && r.IP.Equal(l.IP)
}

// addrKey is what connections from addr are counted by: its IP, or for
// IPv6 its /64 prefix (one host usually holds a whole /64).
func addrKey(addr net.Addr) string {
	var ip net.IP
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.IP
	default:
		host, _, err := net.SplitHostPort(addr.String())
		if err != nil {
			return addr.String()
		}
		ip = net.ParseIP(host)
		if ip == nil {
			return host
		}
	}
	if ip.To4() == nil && len(ip) == net.IPv6len {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// brokerListener accepts the broker's connections: it refuses those
// beyond MaxPendingConnections (overall and per address) before reading a
// byte, gives the others ConnectTimeout to complete the TLS handshake and
// send CONNECT, and counts and logs (rate-limited) why connections ended.
type brokerListener struct {
	ln             net.Listener
	tls            *tls.Config
	table          *connTable
	connectTimeout time.Duration
	stats          *brokerStats
	ev             *eventLog
	log            *slog.Logger
	srv            *mochi.Server // whose clients Close disconnects
	end            atomic.Bool   // no more accepting
	closed         atomic.Bool   // clients closed
	mu             sync.Mutex

	liveMu     sync.Mutex
	live       map[*brokerConn]struct{} // connections handed to the broker, until they end
	liveClosed bool                     // Close has closed them: no more are handed over
}

// track adds a connection about to be handed to the broker; it reports
// false once Close has closed the live connections.
func (l *brokerListener) track(c *brokerConn) bool {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	if l.liveClosed {
		return false
	}
	if l.live == nil {
		l.live = map[*brokerConn]struct{}{}
	}
	l.live[c] = struct{}{}
	return true
}

func (l *brokerListener) untrack(c *brokerConn) {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	delete(l.live, c)
}

// closeLive closes every connection still handed to the broker. The
// broker's Close waits until each connection's handler has returned; a
// connection it no longer lists among its clients (a client id taken over
// while its old connection still reads) would hold it for good otherwise.
func (l *brokerListener) closeLive() {
	l.liveMu.Lock()
	l.liveClosed = true
	conns := make([]*brokerConn, 0, len(l.live))
	for c := range l.live {
		conns = append(conns, c)
	}
	l.liveMu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (l *brokerListener) ID() string                  { return "sluice" }
func (l *brokerListener) Address() string             { return l.ln.Addr().String() }
func (l *brokerListener) Protocol() string            { return "tcp" }
func (l *brokerListener) Init(log *slog.Logger) error { l.log = log; return nil }

// Serve accepts connections until Close; a failing Accept (out of file
// descriptors) is retried after a pause rather than ending the listener.
func (l *brokerListener) Serve(establish listeners.EstablishFn) {
	pause := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if l.end.Load() {
			if conn != nil {
				_ = conn.Close()
			}
			return
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.ev.warn("accept", "mqtt broker: accepting a connection failed", "err", err)
			time.Sleep(pause)
			pause = min(2*pause, time.Second)
			continue
		}
		pause = 5 * time.Millisecond
		bc := &brokerConn{Conn: conn, table: l.table, addr: addrKey(conn.RemoteAddr()), local: sameHost(conn), state: connReleased,
			deadline: time.Now().Add(l.connectTimeout), ended: make(chan struct{})}
		if l.tls != nil {
			bc.tls = tls.Server(conn, l.tls)
			bc.Conn = bc.tls
		}
		if refusal := l.table.accept(bc); refusal != "" {
			l.stats.pendingRefused.Add(1)
			l.ev.warn(refusal, "mqtt broker: refused a connection: "+refusal+" reached",
				"remote", conn.RemoteAddr().String(), "max_pending_connections", l.table.maxPending,
				"max_pending_per_ip", l.table.maxPendingPerIP)
			_ = conn.Close()
			continue
		}
		_ = conn.SetDeadline(bc.deadline)
		if !l.track(bc) {
			_ = bc.Close()
			close(bc.ended)
			return
		}
		go func() {
			defer close(bc.ended)
			defer l.untrack(bc)
			err := establish(l.ID(), bc)
			_ = bc.Close()
			l.ended(bc, err)
		}()
	}
}

// ended counts and logs why a connection ended.
func (l *brokerListener) ended(c *brokerConn, err error) {
	var ne net.Error
	var code packets.Code
	switch {
	case err == nil, errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled):
	case errors.Is(err, packets.ErrPacketTooLarge):
		l.stats.oversized.Add(1)
		l.ev.warn("oversized", "mqtt broker: closed a connection: packet too large", "remote", c.RemoteAddr().String())
	case errors.As(err, &ne) && ne.Timeout():
		l.stats.connectTimeouts.Add(1)
		l.ev.warn("timeout", "mqtt broker: closed a silent connection", "remote", c.RemoteAddr().String())
	case errors.As(err, &code) && (code == packets.ErrBadUsernameOrPassword || code == packets.ErrNotAuthorized):
		// Counted and logged when refused.
	default:
		l.log.Debug("mqtt broker: connection ended", "remote", c.RemoteAddr().String(), "err", err)
	}
}

// closePending stops accepting, closes the connections still to complete
// CONNECT and waits (a few seconds at most) until the broker is done with
// them: the broker library's Close must not run while it sets up a
// connection it has just been handed.
func (l *brokerListener) closePending() {
	l.end.Store(true)
	_ = l.ln.Close()
	l.table.mu.Lock()
	conns := make([]*brokerConn, 0, len(l.table.waiting))
	for c := range l.table.waiting {
		conns = append(conns, c)
	}
	l.table.mu.Unlock()
	limit := time.NewTimer(5 * time.Second)
	defer limit.Stop()
	for _, c := range conns {
		_ = c.Close()
		select {
		case <-c.ended:
		case <-limit.C:
			return
		}
	}
}

// Close stops accepting and closes the listener's clients.
//
// It does not call the broker library's closeClients: that one lists the
// clients with Clients.GetByListener, which takes the client table's read
// lock twice (once more through Clients.Len). A client connecting or
// leaving in between queues for the write lock, the second read lock
// waits behind it and the broker's Close hangs for good. The clients are
// listed here under a single read lock (Clients.GetAll) instead.
func (l *brokerListener) Close(_ listeners.CloseFn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end.Store(true)
	if l.closed.CompareAndSwap(false, true) && l.srv != nil {
		for _, cl := range l.srv.Clients.GetAll() {
			if cl.Net.Listener == l.ID() && !cl.Closed() {
				_ = l.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
		l.closeLive()
	}
	_ = l.ln.Close()
}

// retainHook keeps the retained messages within their limits.
type retainHook struct {
	mochi.HookBase
	srv              *mochi.Server
	stats            *brokerStats
	ev               *eventLog
	maxCount         int64
	maxBytes         int64
	mu               sync.Mutex
	sizes            map[string]int64 // bytes of each retained topic and payload
	count, bytes     int64
	countAt, bytesAt atomic.Int64 // count and bytes, for Stats
	dropped          atomic.Int64
}

func (h *retainHook) ID() string { return "sluice-retain" }

func (h *retainHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnPublish, mochi.OnWill, mochi.OnRetainedExpired, mochi.OnPublishDropped}, []byte{b})
}

// admit reserves room for a retained message on topic, or frees its
// topic's room when payload is empty (a deletion); it reports whether the
// message may be retained.
func (h *retainHook) admit(topic string, payload int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, had := h.sizes[topic]
	if payload == 0 {
		if had {
			delete(h.sizes, topic)
			h.count--
			h.bytes -= old
			h.publish()
		}
		return true
	}
	size := int64(len(topic) + payload)
	count := h.count
	if !had {
		count++
	}
	if count <= h.maxCount && h.bytes-old+size <= h.maxBytes {
		h.sizes[topic] = size
		h.count, h.bytes = count, h.bytes-old+size
		h.publish()
		return true
	}
	if had {
		// Do not leave an older value looking current.
		delete(h.sizes, topic)
		h.count--
		h.bytes -= old
		h.publish()
		h.srv.Topics.RetainMessage(packets.Packet{TopicName: topic})
	}
	return false
}

func (h *retainHook) publish() {
	h.countAt.Store(h.count)
	h.bytesAt.Store(h.bytes)
}

func (h *retainHook) refused(cl *mochi.Client, topic string) {
	h.stats.retainedRefused.Add(1)
	h.ev.warn("retained", "mqtt broker: a retained message was not retained: retained limits reached",
		"client", clip(cl.ID), "topic", clip(topic), "max_retained", h.maxCount, "max_retained_bytes", h.maxBytes)
}

func (h *retainHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && !h.admit(pk.TopicName, len(pk.Payload)) {
		pk.FixedHeader.Retain = false
		h.refused(cl, pk.TopicName)
	}
	return pk, nil
}

func (h *retainHook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	if will.Retain && !h.admit(will.TopicName, len(will.Payload)) {
		will.Retain = false
		h.refused(cl, will.TopicName)
	}
	return will, nil
}

func (h *retainHook) OnRetainedExpired(topic string) { h.admit(topic, 0) }

func (h *retainHook) OnPublishDropped(*mochi.Client, packets.Packet) { h.dropped.Add(1) }

// logFilter is the handler of the broker library's log: it writes packets
// as their type and topic (never their payload or a CONNECT's password)
// and lets through at most eventBurst lines of one message per
// eventInterval at WARN and above.
type logFilter struct {
	next slog.Handler
	ev   *eventLog
}

func (f *logFilter) Enabled(ctx context.Context, l slog.Level) bool { return f.next.Enabled(ctx, l) }

func (f *logFilter) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = safeAttr(a)
	}
	return &logFilter{next: f.next.WithAttrs(out), ev: f.ev}
}

func (f *logFilter) WithGroup(name string) slog.Handler {
	return &logFilter{next: f.next.WithGroup(name), ev: f.ev}
}

func (f *logFilter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && !f.ev.allow("lib:"+r.Message) {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(safeAttr(a))
		return true
	})
	return f.next.Handle(ctx, out)
}

// allow reports whether a line of kind may be logged now, logging how
// many were left out when a new interval starts.
func (e *eventLog) allow(kind string) bool {
	e.mu.Lock()
	l := e.by[kind]
	if l == nil {
		if len(e.by) > 1024 {
			clear(e.by)
		}
		l = &logLimiter{Interval: eventInterval, Burst: eventBurst}
		e.by[kind] = l
	}
	ok, suppressed := l.Allow(time.Now())
	e.mu.Unlock()
	if suppressed > 0 {
		e.log.Warn("mqtt broker: lines left out", "kind", kind, "lines", suppressed, "interval", eventInterval)
	}
	return ok
}

// safeAttr replaces packets and wills by what may be logged of them, in
// groups too.
func safeAttr(a slog.Attr) slog.Attr {
	switch v := a.Value.Any().(type) {
	case *packets.Packet:
		if v != nil {
			return safeAttr(slog.Any(a.Key, *v))
		}
	case packets.Packet:
		return slog.Group(a.Key, "type", packets.PacketNames[v.FixedHeader.Type], "topic", clip(v.TopicName),
			"bytes", len(v.Payload))
	case mochi.Will:
		return slog.Group(a.Key, "topic", clip(v.TopicName), "bytes", len(v.Payload))
	case packets.Code, error, string, int, int64, uint16, bool, time.Duration:
		return a
	}
	switch a.Value.Kind() {
	case slog.KindGroup:
		g := a.Value.Group()
		safe := make([]slog.Attr, len(g))
		for i, x := range g {
			safe[i] = safeAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(safe...)}
	case slog.KindAny:
		return slog.String(a.Key, "(omitted)")
	}
	return a
}
