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
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, fmt.Errorf("user %q: the password hash is not a bcrypt hash: %w", u.Username, err)
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
		if strings.ContainsAny(k, "/+#") {
			return nil, fmt.Errorf("user %q: key %q holds / + or #", u.Username, k)
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

// verified reports whether password is the account's.
func (a *account) verified(password []byte) bool {
	if a.hash == nil {
		d := sha256.Sum256(password)
		return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
	}
	return bcrypt.CompareHashAndPassword(a.hash, password) == nil
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

	mu       sync.Mutex
	accepted map[[32]byte]struct{} // SHA-256 of user and password bcrypt accepted
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

// authenticate returns the rights of the credentials, or nil.
func (h *authHook) authenticate(user, password []byte) *access {
	if h.open {
		return &openAccess
	}
	if len(user) == 0 {
		return h.anonymous
	}
	a := h.users[string(user)]
	if a == nil {
		// Spend the time of a check anyway, so that timing does not tell
		// which user names exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash, password)
		return nil
	}
	if a.hash == nil {
		if a.verified(password) {
			return &a.access
		}
		return nil
	}
	key := sha256.Sum256(slices.Concat(user, []byte{0}, password))
	h.mu.Lock()
	_, ok := h.accepted[key]
	h.mu.Unlock()
	if ok {
		return &a.access
	}
	if !a.verified(password) {
		return nil
	}
	h.mu.Lock()
	if len(h.accepted) >= maxVerified {
		clear(h.accepted)
	}
	h.accepted[key] = struct{}{}
	h.mu.Unlock()
	return &a.access
}

// dummyHash is checked against when the user does not exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("sluice"), bcrypt.MinCost)

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
	a := h.authenticate(pk.Connect.Username, pk.Connect.Password)
	if a == nil {
		return refuse(packets.ErrBadUsernameOrPassword, &h.stats.authRefused, "mqtt broker: refused a client: bad user name or password")
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
	if c, ok := cl.Net.Conn.(*brokerConn); ok {
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
		return s[:limit] + "..."
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
