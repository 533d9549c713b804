package mqtt

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-edge/sluice/connectors/codec"
)

// BrokerUser is an account of the embedded broker.
type BrokerUser struct {
	// Username is the MQTT user name. Names starting with $ are reserved.
	Username string
	// PasswordHash is the bcrypt hash of the password ($2a$, $2b$ or $2y$).
	PasswordHash string
	// Password is the password itself, for passwords that come from a
	// secret store or the environment rather than a file; it is compared
	// in constant time. Set PasswordHash or Password.
	Password string
	// ProductKey and DeviceKey make the user an EnOS device: it may
	// publish under /sys/{ProductKey}/{DeviceKey}/ (but not the topics
	// only the engine publishes: service requests and replies to posts),
	// and subscribe to filters confined to that prefix.
	ProductKey, DeviceKey string
	// Publish and Subscribe are further topic filters the user may publish
	// to and subscribe to (wildcards allowed; %u stands for the user
	// name). Downlink topics stay the engine's.
	Publish, Subscribe []string
	// Engine grants every topic, downlink included: for the engine's own
	// clients and trusted services.
	Engine bool
}

// account is a BrokerUser ready to check.
type account struct {
	hash   []byte   // bcrypt
	digest [32]byte // SHA-256 of a clear password, when hash is nil
	access access
}

// newAccount checks u and prepares its password and rights.
func newAccount(u BrokerUser) (*account, error) {
	if u.Username == "" {
		return nil, errors.New("a user has no user name")
	}
	a := &account{access: access{name: u.Username, all: u.Engine, productKey: u.ProductKey, deviceKey: u.DeviceKey}}
	switch {
	case u.PasswordHash != "" && u.Password != "":
		return nil, fmt.Errorf("user %q: set a password hash or a password, not both", u.Username)
	case u.PasswordHash != "":
		cost, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			return nil, fmt.Errorf("user %q: the password hash is not a bcrypt hash: %w", u.Username, err)
		}
		if cost > maxHashCost {
			return nil, fmt.Errorf("user %q: the password hash has cost %d: checking it would take minutes, use a cost of at most %d (10 to 12 is usual)",
				u.Username, cost, maxHashCost)
		}
		a.hash = []byte(u.PasswordHash)
	case u.Password != "":
		a.digest = sha256.Sum256([]byte(u.Password))
	default:
		return nil, fmt.Errorf("user %q has no password", u.Username)
	}
	if (u.ProductKey == "") != (u.DeviceKey == "") {
		return nil, fmt.Errorf("user %q: set both product key and device key, or neither", u.Username)
	}
	for _, k := range []string{u.ProductKey, u.DeviceKey} {
		if k == "" {
			continue
		}
		if err := codec.CheckKey(k, 0); err != nil {
			return nil, fmt.Errorf("user %q: %w", u.Username, err)
		}
	}
	for _, list := range []struct {
		in  []string
		out *[]string
	}{{u.Publish, &a.access.publish}, {u.Subscribe, &a.access.subscribe}} {
		for _, f := range list.in {
			f = strings.ReplaceAll(f, "%u", u.Username)
			if err := checkPattern(f); err != nil {
				return nil, fmt.Errorf("user %q: %w", u.Username, err)
			}
			*list.out = append(*list.out, f)
		}
	}
	return a, nil
}

// maxHashCost is the highest bcrypt cost accepted: each step doubles the
// time of a check (cost 10 takes some 60 ms on a small core, 15 two
// seconds).
const maxHashCost = 15

// clearVerified reports whether password is the clear password of the
// account, which has no hash.
func (a *account) clearVerified(password []byte) bool {
	d := sha256.Sum256(password)
	return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
}

// anonymousAccess is what anonymous clients may do on a broker with users
// and allow_anonymous: everything but publishing downlink topics.
var anonymousAccess = access{name: "", publish: []string{"#"}, subscribe: []string{"#"}}

// openAccess is every client's on a broker without users.
var openAccess = access{all: true}

// maxVerified bounds the cache of credentials bcrypt accepted.
const maxVerified = 4096

// authHook admits clients — credentials, client certificate, will topic,
// session takeover — and checks every publication and subscription
// against the client's rights.
type authHook struct {
	mochi.HookBase
	srv   *mochi.Server
	stats *brokerStats
	ev    *eventLog
	users map[string]*account
	// open: no users, every client has every right.
	open bool
	// anonymous is what clients without a user name may do; nil refuses
	// them.
	anonymous *access
	// requireCert refuses clients other than engine users that presented
	// no verified certificate (mutual TLS).
	requireCert bool
	// maxKeepAlive, in seconds, replaces a client's longer or disabled
	// keep-alive (0: no limit).
	maxKeepAlive uint16

	// dummy is the bcrypt hash checked when a login fails without a
	// bcrypt check of its own (an unknown user, a wrong clear password),
	// at the highest cost of the users' hashes: a failure takes as long
	// whether the user exists or not.
	dummy []byte
	// hashing admits one bcrypt check at a time, so that a flood of wrong
	// passwords holds at most one core.
	hashing chan struct{}
	// backoff refuses, without checking them, the logins of addresses
	// whose last logins failed.
	backoff *backoffTable
	// compare is bcrypt.CompareHashAndPassword (tests watch it).
	compare func(hash, password []byte) error

	mu       sync.Mutex
	accepted map[[32]byte]struct{} // SHA-256 of user and password bcrypt accepted
}

// newAuthHook returns the hook admitting users, its dummy hash at the
// highest cost of their hashes.
func newAuthHook(stats *brokerStats, ev *eventLog, users map[string]*account, maxKeepAlive uint16) *authHook {
	cost := bcrypt.MinCost
	for _, a := range users {
		if a.hash != nil {
			c, _ := bcrypt.Cost(a.hash) // checked by newAccount
			cost = max(cost, c)
		}
	}
	return &authHook{stats: stats, ev: ev, users: users, accepted: map[[32]byte]struct{}{}, maxKeepAlive: maxKeepAlive,
		dummy: dummyHash(cost), hashing: make(chan struct{}, 1), backoff: newBackoffTable(time.Now),
		compare: bcrypt.CompareHashAndPassword}
}

func (h *authHook) ID() string { return "sluice-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

// accessOf returns the rights of an admitted client, or nil.
func (h *authHook) accessOf(cl *mochi.Client) *access {
	switch {
	case h.open:
		return &openAccess
	case len(cl.Properties.Username) == 0:
		return h.anonymous
	}
	if a := h.users[string(cl.Properties.Username)]; a != nil {
		return &a.access
	}
	return nil
}

// authResult is why authenticate refused credentials.
type authResult uint8

const (
	authOK authResult = iota
	// authBad: wrong user name or password.
	authBad
	// authThrottled: not checked, the address backing off after failed
	// logins or no check free before the connection's deadline.
	authThrottled
)

// authenticate returns the rights of the credentials presented from the
// address from (addrKey), or why they are refused. A bcrypt check waits
// for its turn until deadline.
func (h *authHook) authenticate(user, password []byte, from string, deadline time.Time) (*access, authResult) {
	if h.open {
		return &openAccess, authOK
	}
	if len(user) == 0 {
		if h.anonymous == nil {
			return nil, authBad
		}
		return h.anonymous, authOK
	}
	a := h.users[string(user)]
	// The process's own user has a random secret no one guesses, checked
	// at no cost: it is let through an address's back-off, so that its
	// components always get in. Everyone else's logins from an address
	// backing off are refused unchecked, cached or not (a hit in the
	// cache would tell the password at network speed).
	exempt := string(user) == engineUser
	if !exempt && h.backoff.blocked(from) {
		return nil, authThrottled
	}
	res := h.check(a, user, password, from, deadline)
	switch res {
	case authOK:
		if !exempt {
			h.backoff.succeeded(from)
		}
		return &a.access, authOK
	case authBad:
		h.backoff.failed(from)
	}
	return nil, res
}

// check checks the password of account a (nil: no such user). A failure
// takes the time of a bcrypt check at the highest cost of the users'
// hashes whatever the user, so that timing does not tell which names
// exist; failures are not cached, as successes are.
func (h *authHook) check(a *account, user, password []byte, from string, deadline time.Time) authResult {
	var hash []byte
	switch {
	case a == nil:
		hash = h.dummy
	case a.hash == nil:
		if a.clearVerified(password) {
			return authOK
		}
		hash = h.dummy
	default:
		key := sha256.Sum256(slices.Concat(user, []byte{0}, password))
		h.mu.Lock()
		_, ok := h.accepted[key]
		h.mu.Unlock()
		if ok {
			return authOK
		}
		ok, res := h.bcrypt(a.hash, password, from, deadline)
		if res != authOK {
			return res
		}
		if !ok {
			return authBad
		}
		h.mu.Lock()
		if len(h.accepted) >= maxVerified {
			clear(h.accepted)
		}
		h.accepted[key] = struct{}{}
		h.mu.Unlock()
		return authOK
	}
	if _, res := h.bcrypt(hash, password, from, deadline); res != authOK {
		return res
	}
	return authBad
}

// bcrypt compares password with hash once no other comparison runs,
// waiting until deadline at most; it does not compare when the address
// from began backing off meanwhile (another of its logins failed), so
// that an address gets one check per back-off however many connections
// it opens at once.
func (h *authHook) bcrypt(hash, password []byte, from string, deadline time.Time) (match bool, res authResult) {
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case h.hashing <- struct{}{}:
	case <-wait.C:
		return false, authThrottled
	}
	defer func() { <-h.hashing }()
	if h.backoff.blocked(from) {
		return false, authThrottled
	}
	return h.compare(hash, password) == nil, authOK
}

// Back-off of the addresses whose logins failed: after each failure an
// address's logins are refused unchecked for backoffFirst, doubling up to
// backoffMax; a success, or a quiet backoffMax past the back-off, ends
// it. Only the address backs off, never a user name: that would let
// anyone lock a device out.
const (
	backoffFirst    = time.Second
	backoffMax      = time.Minute
	maxBackoffAddrs = 4096
)

// backoffTable holds the back-off of at most maxBackoffAddrs addresses.
type backoffTable struct {
	now func() time.Time
	mu  sync.Mutex
	by  map[string]*backoffEntry
}

type backoffEntry struct {
	failures int
	until    time.Time
}

func newBackoffTable(now func() time.Time) *backoffTable {
	return &backoffTable{now: now, by: map[string]*backoffEntry{}}
}

// blocked reports whether addr is backing off.
func (t *backoffTable) blocked(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.by[addr]
	return e != nil && t.now().Before(e.until)
}

// failed starts or doubles addr's back-off.
func (t *backoffTable) failed(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.by[addr]
	switch {
	case e == nil:
		if len(t.by) >= maxBackoffAddrs {
			t.evict(now)
		}
		e = &backoffEntry{}
		t.by[addr] = e
	case now.After(e.until.Add(backoffMax)):
		e.failures = 0
	}
	e.failures++
	e.until = now.Add(min(backoffFirst<<min(e.failures-1, 16), backoffMax))
}

// succeeded ends addr's back-off.
func (t *backoffTable) succeeded(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.by, addr)
}

// evict forgets the addresses quiet for backoffMax past their back-off,
// then, if the table is still over three quarters full, arbitrary ones
// (addresses enough to fill it get no more than they would with a bigger
// one: one check per address per back-off).
func (t *backoffTable) evict(now time.Time) {
	for k, e := range t.by {
		if now.After(e.until.Add(backoffMax)) {
			delete(t.by, k)
		}
	}
	for k := range t.by {
		if len(t.by) <= maxBackoffAddrs*3/4 {
			break
		}
		delete(t.by, k)
	}
}

// Dummy hashes by cost, made once per process.
var (
	dummyMu     sync.Mutex
	dummyByCost = map[int][]byte{}
)

// dummyHash returns a bcrypt hash of a random password at cost.
func dummyHash(cost int) []byte {
	dummyMu.Lock()
	defer dummyMu.Unlock()
	if h := dummyByCost[cost]; h != nil {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(randomSecret()[:32]), cost)
	if err != nil {
		// Only an invalid cost fails, and newAccount checks costs.
		h, _ = bcrypt.GenerateFromPassword([]byte(randomSecret()[:32]), bcrypt.DefaultCost)
	}
	dummyByCost[cost] = h
	return h
}

// OnConnect admits or refuses a client; a refused client gets a CONNACK
// saying why and is disconnected.
func (h *authHook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	refuse := func(code packets.Code, counter *counter, msg string, args ...any) error {
		counter.Add(1)
		args = append([]any{"user", clip(string(pk.Connect.Username)), "client", clip(cl.ID), "remote", cl.Net.Remote}, args...)
		h.ev.warn(msg, msg, args...)
		ack := code
		if _, ok := packets.V5CodesToV3[code]; !ok && cl.Properties.ProtocolVersion < 5 {
			// The broker library maps this code to 3.1.1's "not
			// authorized"; it maps "server unavailable" as it is.
			ack = packets.ErrBadUsernameOrPassword
		}
		_ = h.srv.SendConnack(cl, ack, false, nil)
		return code
	}
	from, deadline := cl.Net.Remote, time.Now().Add(DefaultBrokerConnectTimeout)
	conn, _ := cl.Net.Conn.(*brokerConn)
	if conn != nil {
		from, deadline = conn.addr, conn.deadline
	}
	a, res := h.authenticate(pk.Connect.Username, pk.Connect.Password, from, deadline)
	switch res {
	case authBad:
		return refuse(packets.ErrBadUsernameOrPassword, &h.stats.authRefused, "mqtt broker: refused a client: bad user name or password")
	case authThrottled:
		return refuse(packets.ErrServerUnavailable, &h.stats.authThrottled,
			"mqtt broker: refused a client without checking its password: its address is backing off after failed logins, or no check was free in time")
	}
	if h.requireCert && !a.all && !verifiedCert(cl) {
		return refuse(packets.ErrNotAuthorized, &h.stats.authRefused, "mqtt broker: refused a client: no verified client certificate")
	}
	if pk.Connect.WillFlag && !a.canPublish(pk.Connect.WillTopic) {
		return refuse(packets.ErrNotAuthorized, &h.stats.aclRefused, "mqtt broker: refused a client: will topic not permitted",
			"topic", clip(pk.Connect.WillTopic))
	}
	old, held := h.srv.Clients.Get(cl.ID)
	if held && !bytes.Equal(old.Properties.Username, pk.Connect.Username) {
		return refuse(packets.ErrNotAuthorized, &h.stats.takeoversRefused,
			"mqtt broker: refused a client: its client id belongs to a session of another user",
			"session_user", clip(string(old.Properties.Username)))
	}
	if c := conn; c != nil {
		// Engine users are bounded by neither limit: the process's own
		// components must get in whatever devices hold. A takeover closes
		// the connection it replaces.
		engine := !h.open && a.all
		perUser := !engine && len(pk.Connect.Username) > 0
		takeover := held && !old.Closed()
		switch c.table.establish(c, string(pk.Connect.Username), !engine, perUser, takeover) {
		case "max_connections":
			return refuse(packets.ErrServerUnavailable, &h.stats.connectionsRefused,
				"mqtt broker: refused a client: max_connections reached", "max_connections", c.table.maxConns)
		case "max_connections_per_user":
			return refuse(packets.ErrServerUnavailable, &h.stats.userConnectionsRefused,
				"mqtt broker: refused a client: max_connections_per_user reached", "max_connections_per_user", c.table.maxPerUser)
		}
	}
	if h.maxKeepAlive > 0 && (cl.State.Keepalive == 0 || cl.State.Keepalive > h.maxKeepAlive) {
		cl.State.Keepalive = h.maxKeepAlive
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnConnectAuthenticate lets through the clients OnConnect admitted.
func (h *authHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck checks a publication (write), or a subscription or a
// delivery, against the client's rights.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	a := h.accessOf(cl)
	if a != nil && a.all {
		return true
	}
	if a != nil && (write && a.canPublish(topic) || !write && a.canSubscribe(topic)) {
		return true
	}
	if !write && a != nil && a.deviceKey != "" && underDevice(topic, a.productKey, a.deviceKey) && !strings.ContainsAny(topic, "+#") {
		// A device's own uplink, filtered out of its subscription: not
		// worth a refusal.
		return false
	}
	h.stats.aclRefused.Add(1)
	op := "subscribe"
	if write {
		op = "publish"
	}
	h.ev.warn("acl", "mqtt broker: refused by ACL", "user", clip(string(cl.Properties.Username)), "client", clip(cl.ID),
		"op", op, "topic", clip(topic))
	return false
}

// verifiedCert reports whether the client presented a certificate that
// the listener verified.
func verifiedCert(cl *mochi.Client) bool {
	c, ok := cl.Net.Conn.(*brokerConn)
	if !ok || c.tls == nil {
		return false
	}
	return len(c.tls.ConnectionState().VerifiedChains) > 0
}

// clip shortens a client-supplied string for a log line.
func clip(s string) string {
	const limit = 128
	if len(s) > limit {
		return cutUTF8(s, limit) + "..."
	}
	return s
}

// engineUser is the user name of the process's own clients on its
// embedded brokers; names starting with $ are refused in configured users.
const engineUser = "$sluice-engine"

// engineSecret is the password of engineUser: random, made once per
// process, never written anywhere. Devices cannot forge it; the process's
// components get it from parseConnConfig.
var engineSecret = sync.OnceValue(func() string {
	return randomSecret()
})

// engineAccount returns the BrokerUser of the process's own clients.
func engineAccount() BrokerUser {
	return BrokerUser{Username: engineUser, Password: engineSecret(), Engine: true}
}

// keepAliveSeconds converts a keep-alive limit to MQTT's seconds.
func keepAliveSeconds(d time.Duration) uint16 {
	s := d / time.Second
	if s > 65535 {
		return 65535
	}
	return uint16(s)
}
