package mqtt

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// brokerFields declares the broker field of the mqtt source and sink.
func brokerFields() []spec.Field {
	return []spec.Field{
		{Name: "embedded", Type: spec.Bool, Default: false, Description: "Start the embedded broker."},
		{Name: "listen", Type: spec.String, Default: "127.0.0.1:1883", Description: "TCP address the embedded broker listens on. Open it beyond loopback only with `users` (and `tls`).", Example: "0.0.0.0:8883"},
		{Name: "users", Type: spec.List, Elem: spec.Object, Optional: true,
			Description: "Accounts of the clients. Without users (and without `allow_anonymous`) only the process's own components can connect. A device user publishes under its own `/sys/{product_key}/{device_key}/` (batch posts only when `publish` names them: a batch names any device) and subscribes there; only the engine publishes service requests and replies to posts.",
			Example:     []map[string]any{{"username": "T0001", "password_hash": "${T0001_HASH}", "product_key": "turbine", "device_key": "T0001"}},
			Children: []spec.Field{
				{Name: "username", Type: spec.String, Description: "User name (names starting with `$` are reserved)."},
				{Name: "password_hash", Type: spec.String, Optional: true, Description: "bcrypt hash of the password (`htpasswd -nbB user pass`, `$2a$`/`$2b$`/`$2y$`; cost at most 15). Give every user the same cost: a failed login costs a check at the highest one."},
				{Name: "password_env", Type: spec.String, Optional: true, Description: "Name of an environment variable holding the password.", Example: "T0001_PASSWORD"},
				{Name: "product_key", Type: spec.String, Optional: true, Description: "Makes the user an EnOS device of this product."},
				{Name: "device_key", Type: spec.String, Optional: true, Description: "The device's key (default: the user name, when product_key is set)."},
				{Name: "publish", Type: spec.List, Elem: spec.String, Optional: true, Description: "Further topic filters the user may publish to (`%u`: the user name); never downlink topics. A gateway needs its batch topics here.", Example: []string{"/sys/turbine/%u/thing/measurepoint/post/batch"}},
				{Name: "subscribe", Type: spec.List, Elem: spec.String, Optional: true, Description: "Further topic filters the user may subscribe to (`%u`: the user name)."},
			}},
		{Name: "password_file", Type: spec.String, Optional: true,
			Description: "File of `user:bcrypt-hash` lines giving the hashes of `users` that set no password, and `user:bcrypt-hash:product_key:device_key` lines defining device users. Relative to the pipeline file.",
			Example:     "mqtt.passwd"},
		{Name: "allow_anonymous", Type: spec.Bool, Default: false,
			Description: "Admit clients without a user name. They may read every message and publish anything but downlink topics: only for closed networks."},
		{Name: "tls", Type: spec.Object, Optional: true,
			Description: "Serve TLS only. Paths are relative to the pipeline file.",
			Example:     map[string]any{"cert_file": "certs/broker.pem", "key_file": "certs/broker.key"},
			Children: []spec.Field{
				{Name: "cert_file", Type: spec.String, Description: "PEM certificate (chain) of the broker."},
				{Name: "key_file", Type: spec.String, Description: "PEM key of the certificate."},
				{Name: "client_ca_file", Type: spec.String, Optional: true, Description: "PEM authorities of client certificates: every client but the process's own components must present one (mutual TLS)."},
			}},
		{Name: "max_packet_size", Type: spec.Int, Default: DefaultBrokerMaxPacketSize, Advanced: true,
			Description: "Largest packet a client may send, in bytes; a larger one closes the connection before its body is read. Keep it above the source's `max_payload` so that oversized payloads are answered."},
		{Name: "max_connections", Type: spec.Int, Default: DefaultBrokerMaxConnections, Advanced: true,
			Description: "Clients connected at once (that completed CONNECT; the process's own components not counted); beyond it a CONNECT is refused with \"server unavailable\"."},
		{Name: "max_pending_connections", Type: spec.Int, Default: DefaultBrokerMaxPending, Advanced: true,
			Description: "Connections open at once that have not completed CONNECT (TLS handshake, CONNECT and its password check); beyond it new connections are closed at once, so that idle sockets cannot use up `max_connections`."},
		{Name: "max_pending_per_ip", Type: spec.Int, Default: DefaultBrokerMaxPendingPerIP, Advanced: true,
			Description: "Connections one remote address (an IPv6 /64) may hold that have not completed CONNECT; beyond it its new connections are closed at once."},
		{Name: "max_connections_per_user", Type: spec.Int, Default: DefaultBrokerMaxConnsPerUser, Advanced: true,
			Description: "Connections one user may hold at once (the process's own components and anonymous clients not counted); beyond it a CONNECT is refused with \"server unavailable\", unless it takes over the user's own connected session."},
		{Name: "max_retained", Type: spec.Int, Default: DefaultBrokerMaxRetained, Advanced: true, Description: "Retained messages held at most."},
		{Name: "max_retained_bytes", Type: spec.Int, Default: DefaultBrokerMaxRetainedBytes, Advanced: true,
			Description: "Bytes of retained topics and payloads held at most; a retained message beyond the limits is delivered but not retained."},
		{Name: "max_inflight", Type: spec.Int, Default: DefaultBrokerMaxInflight, Advanced: true,
			Description: "Unacknowledged QoS 1/2 messages kept per client (1 to 65535); beyond it messages to that client are dropped."},
		{Name: "max_queued", Type: spec.Int, Default: DefaultBrokerMaxQueued, Advanced: true,
			Description: "Messages waiting to be written to one client (1 to 1048576); beyond it messages to that client are dropped."},
		{Name: "connect_timeout", Type: spec.Duration, Default: DefaultBrokerConnectTimeout, Advanced: true,
			Description: "Time a new connection has to complete the TLS handshake and send CONNECT."},
		{Name: "max_keep_alive", Type: spec.Duration, Default: DefaultBrokerMaxKeepAlive, Advanced: true,
			Description: "Longest keep-alive granted; longer or disabled keep-alives are replaced by it (a silent client is disconnected after 1.5 times it)."},
	}
}

// maxPasswordFile bounds the password file.
const maxPasswordFile = 64 << 20

// parseEmbedded reads the broker field into the options of the embedded
// broker (the engine's account included); bare reports that it sets
// nothing but embedded and listen.
func parseEmbedded(bc *spec.Config, rel func(string) string) (opts BrokerOptions, bare bool, errs spec.Errors) {
	opts.Listen = bc.String("listen")
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:1883"
	}
	bare = true
	for _, f := range brokerFields() {
		if f.Name != "embedded" && f.Name != "listen" && bc.Has(f.Name) {
			bare = false
		}
	}
	opts.AllowAnonymous = bc.Bool("allow_anonymous")
	opts.Limits = BrokerLimits{
		MaxPacketSize:         int(bc.Int("max_packet_size")),
		MaxConnections:        int(bc.Int("max_connections")),
		MaxPendingConnections: int(bc.Int("max_pending_connections")),
		MaxPendingPerIP:       int(bc.Int("max_pending_per_ip")),
		MaxConnectionsPerUser: int(bc.Int("max_connections_per_user")),
		MaxRetained:           int(bc.Int("max_retained")),
		MaxRetainedBytes:      bc.Int("max_retained_bytes"),
		MaxInflight:           int(bc.Int("max_inflight")),
		MaxQueued:             int(bc.Int("max_queued")),
		ConnectTimeout:        bc.Duration("connect_timeout"),
		MaxKeepAlive:          bc.Duration("max_keep_alive"),
	}
	for _, r := range []struct {
		name     string
		min, max int64
	}{
		{"max_packet_size", 1024, 256 << 20}, {"max_connections", 1, 1 << 20}, {"max_pending_connections", 1, 1 << 16},
		{"max_pending_per_ip", 1, 1 << 16}, {"max_connections_per_user", 1, 1 << 20}, {"max_retained", 1, 1 << 24},
		{"max_retained_bytes", 1, 1 << 40}, {"max_inflight", 1, 65535}, {"max_queued", 1, 1 << 20},
	} {
		if v := bc.Int(r.name); v < r.min || v > r.max {
			errs = append(errs, bc.Errorf(r.name, "%s must be between %d and %d, not %d", r.name, r.min, r.max, v))
		}
	}
	if d := bc.Duration("connect_timeout"); d <= 0 {
		errs = append(errs, bc.Errorf("connect_timeout", "connect_timeout must be positive"))
	}
	if d := bc.Duration("max_keep_alive"); d.Seconds() < 1 || d.Seconds() > 65535 {
		errs = append(errs, bc.Errorf("max_keep_alive", "max_keep_alive must be between 1s and 65535s"))
	}

	users := map[string]int{} // index in opts.Users
	for _, uc := range bc.Objects("users") {
		u := BrokerUser{Username: uc.String("username"), PasswordHash: uc.String("password_hash"),
			ProductKey: uc.String("product_key"), DeviceKey: uc.String("device_key"),
			Publish: uc.Strings("publish"), Subscribe: uc.Strings("subscribe")}
		if u.ProductKey != "" && u.DeviceKey == "" {
			u.DeviceKey = u.Username
		}
		if env := uc.String("password_env"); env != "" {
			if u.PasswordHash != "" {
				errs = append(errs, uc.Errorf("password_env", "set password_hash or password_env, not both"))
			}
			u.Password = os.Getenv(env)
			if u.Password == "" {
				errs = append(errs, uc.Errorf("password_env", "environment variable %s is not set or empty", env))
			}
		}
		if strings.HasPrefix(u.Username, "$") {
			errs = append(errs, uc.Errorf("username", "user names starting with $ are reserved"))
			continue
		}
		if _, dup := users[u.Username]; dup {
			errs = append(errs, uc.Errorf("username", "user %q is listed twice", u.Username))
			continue
		}
		users[u.Username] = len(opts.Users)
		opts.Users = append(opts.Users, u)
	}
	if f := bc.String("password_file"); f != "" {
		if err := readPasswordFile(rel(f), &opts, users); err != nil {
			errs = append(errs, bc.Errorf("password_file", "%v", err))
		}
	}
	for i, u := range opts.Users {
		if u.PasswordHash == "" && u.Password == "" {
			if uc := bc.Objects("users"); i < len(uc) {
				errs = append(errs, uc[i].Errorf("username", "user %q has no password: set password_hash or password_env, or list it in password_file", u.Username))
			}
			continue
		}
		if _, err := newAccount(u); err != nil {
			errs = append(errs, bc.Errorf("users", "%v", err))
		}
	}
	opts.Users = append(opts.Users, engineAccount())

	if tc := bc.Object("tls"); tc != nil {
		t, err := brokerTLS(rel(tc.String("cert_file")), rel(tc.String("key_file")), rel(tc.String("client_ca_file")))
		if err != nil {
			errs = append(errs, bc.Errorf("tls", "%v", err))
		}
		opts.TLS = t
	}
	return opts, bare, errs
}

// readPasswordFile reads user:hash and user:hash:product_key:device_key
// lines; # starts a comment.
func readPasswordFile(path string, opts *BrokerOptions, users map[string]int) error {
	data, err := spec.ReadConfigFile(path, maxPasswordFile)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if (len(parts) != 2 && len(parts) != 4) || parts[0] == "" || parts[1] == "" {
			// The line is not quoted: it may hold a password by mistake.
			return fmt.Errorf("password file %s line %d: want user:bcrypt-hash or user:bcrypt-hash:product_key:device_key", path, n)
		}
		user := parts[0]
		if strings.HasPrefix(user, "$") {
			return fmt.Errorf("password file %s line %d: user names starting with $ are reserved", path, n)
		}
		i, listed := users[user]
		switch {
		case len(parts) == 2 && !listed:
			return fmt.Errorf("password file %s line %d: user %q is not in users (give product_key:device_key to define a device user here)", path, n, user)
		case len(parts) == 2:
			u := &opts.Users[i]
			if u.PasswordHash != "" || u.Password != "" {
				return fmt.Errorf("password file %s line %d: user %q already has a password in the pipeline file", path, n, user)
			}
			u.PasswordHash = parts[1]
		case listed:
			return fmt.Errorf("password file %s line %d: user %q is also in users", path, n, user)
		default:
			users[user] = len(opts.Users)
			opts.Users = append(opts.Users, BrokerUser{Username: user, PasswordHash: parts[1], ProductKey: parts[2], DeviceKey: parts[3]})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("password file %s: %w", path, err)
	}
	return nil
}

// brokerTLS loads the broker's certificate and key, checking that they
// match, and the authorities of client certificates.
func brokerTLS(cert, key, clientCA string) (*tls.Config, error) {
	if cert == "" || key == "" {
		return nil, errors.New("cert_file and key_file are required")
	}
	certPEM, err := spec.ReadConfigFile(cert, outbound.MaxSecretFileBytes)
	if err != nil {
		return nil, fmt.Errorf("cert_file: %w", err)
	}
	keyPEM, err := spec.ReadConfigFile(key, outbound.MaxSecretFileBytes)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := spec.ReadConfigFile(clientCA, outbound.MaxSecretFileBytes)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file: %s holds no PEM certificate", clientCA)
		}
		c.ClientCAs = pool
		// Certificates are verified when given and required of every
		// client but the process's own components (authHook).
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c, nil
}

// pinnedTLS is the TLS configuration of the process's own clients of an
// embedded broker: they accept exactly the broker's certificate.
func pinnedTLS(server *tls.Config) *tls.Config {
	leaf := server.Certificates[0].Certificate[0]
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The certificate is checked below, against the broker's own, not
		// against a name: the client dials the listen address.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
				return errors.New("mqtt: the embedded broker presented another certificate")
			}
			return nil
		},
	}
}

// The settings components declared for each embedded broker address:
// the first component to start the broker starts it with them. A
// component that only names the address (bare) does not replace settings
// another declared.
var (
	embeddedMu     sync.Mutex
	embeddedByAddr = map[string]embeddedSettings{}
)

type embeddedSettings struct {
	opts BrokerOptions
	bare bool
}

func registerEmbedded(opts BrokerOptions, bare bool) {
	embeddedMu.Lock()
	defer embeddedMu.Unlock()
	if old, ok := embeddedByAddr[opts.Listen]; ok && bare && !old.bare {
		return
	}
	embeddedByAddr[opts.Listen] = embeddedSettings{opts: opts, bare: bare}
}

// embeddedOptions returns the settings declared for addr; by default only
// the process's own components may connect.
func embeddedOptions(addr string) BrokerOptions {
	embeddedMu.Lock()
	defer embeddedMu.Unlock()
	if s, ok := embeddedByAddr[addr]; ok {
		return s.opts
	}
	return BrokerOptions{Listen: addr, Users: []BrokerUser{engineAccount()}}
}

// randomSecret returns 32 random bytes in hex.
func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}
