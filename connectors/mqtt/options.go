package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// ClientOptions says how to reach a broker. Zero fields take the defaults
// noted on each.
type ClientOptions struct {
	// URLs are the brokers to connect to, tried in order: tcp://host:port
	// (or mqtt://) and tls://host:port (or ssl://, mqtts://). Default
	// tcp://127.0.0.1:1883.
	URLs []string
	// ClientID identifies the client to the broker; a persistent session
	// is tied to it. Required.
	ClientID string
	// Version is the protocol: 4 (MQTT 3.1.1) or 5 (MQTT 5, the default).
	Version int
	// Username and Password authenticate the client, when set.
	Username string
	Password string
	// TLS configures tls:// connections; nil uses the system roots.
	TLS *tls.Config
	// CleanSession starts a new session on connecting, dropping what the
	// broker kept for this client id; false resumes a persistent session,
	// so messages published while the client was away, and messages it
	// received but never acknowledged, are delivered again.
	CleanSession bool
	// SessionExpiry is how long an MQTT 5 broker keeps a persistent
	// session after the connection ends (default 24h; ignored with
	// CleanSession).
	SessionExpiry time.Duration
	// KeepAlive is the keep-alive interval (default 30s).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt (default 10s).
	ConnectTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the delay between connection
	// attempts, which doubles from min to max (defaults 100ms and 30s).
	// The sink's and the downlink's MQTT 3.1.1 connections (paho.mqtt.golang)
	// wait at least one second before reconnecting.
	ReconnectMin, ReconnectMax time.Duration
	// ReceiveMaximum is how many QoS 1 messages an MQTT 5 broker may send
	// before the client acknowledges them (default 65535, the most MQTT
	// allows: messages beyond it wait in the broker's queue, which is
	// small and drops when full). An MQTT 3.1.1 broker sets this itself
	// (Mosquitto: max_inflight_messages, 20).
	ReceiveMaximum int
	// Log receives connection events; nil discards them.
	Log *slog.Logger
}

func (o *ClientOptions) normalize() error {
	if len(o.URLs) == 0 {
		o.URLs = []string{"tcp://127.0.0.1:1883"}
	}
	if o.ClientID == "" {
		return errors.New("mqtt: a client id is required")
	}
	switch o.Version {
	case 0:
		o.Version = 5
	case 3, 4:
		o.Version = 4
	case 5:
	default:
		return fmt.Errorf("mqtt: protocol version %d is not 4 (3.1.1) or 5", o.Version)
	}
	if o.SessionExpiry <= 0 {
		o.SessionExpiry = 24 * time.Hour
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 30 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(30*time.Second, o.ReconnectMin)
	}
	if o.ReceiveMaximum <= 0 {
		o.ReceiveMaximum = 65535
	}
	o.ReceiveMaximum = min(o.ReceiveMaximum, 65535)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	for _, u := range o.URLs {
		if _, err := parseBrokerURL(u); err != nil {
			return err
		}
	}
	return nil
}

// parseBrokerURL checks a broker URL; a bare host:port reads as tcp://.
func parseBrokerURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := redact.ParseURL(s)
	if err != nil {
		return nil, fmt.Errorf("mqtt: bad broker %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt", "tls", "ssl", "mqtts":
	default:
		return nil, fmt.Errorf("mqtt: broker url %q: scheme %q is not tcp, mqtt, tls, ssl or mqtts", redact.URL(s), u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("mqtt: broker url %q has no host", redact.URL(s))
	}
	if u.Port() == "" {
		port := "1883"
		switch strings.ToLower(u.Scheme) {
		case "tls", "ssl", "mqtts":
			port = "8883"
		}
		u.Host += ":" + port
	}
	return u, nil
}

// TLSFiles names the files of a TLS configuration.
type TLSFiles struct {
	// CA is a PEM file of the certificate authorities that sign the
	// broker's certificate (default: the system roots).
	CA string
	// Cert and Key are the client's PEM certificate and key, for brokers
	// that authenticate clients by certificate.
	Cert, Key string
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. Only for tests.
	InsecureSkipVerify bool
}

// Config loads the files into a tls.Config. Each is read with
// spec.ReadConfigFile: a regular file of at most
// outbound.MaxSecretFileBytes.
func (f TLSFiles) Config() (*tls.Config, error) {
	c := &tls.Config{ServerName: f.ServerName, InsecureSkipVerify: f.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := spec.ReadConfigFile(f.CA, outbound.MaxSecretFileBytes)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca: %s holds no PEM certificate", f.CA)
		}
		c.RootCAs = pool
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("tls: set both cert and key, or neither")
	}
	if f.Cert != "" {
		cert, err := spec.ReadConfigFile(f.Cert, outbound.MaxSecretFileBytes)
		if err != nil {
			return nil, fmt.Errorf("tls cert: %w", err)
		}
		key, err := spec.ReadConfigFile(f.Key, outbound.MaxSecretFileBytes)
		if err != nil {
			return nil, fmt.Errorf("tls key: %w", err)
		}
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("tls cert/key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// connFields declares how a component reaches its broker; shared by the
// mqtt source and sink.
func connFields() []spec.Field {
	return []spec.Field{
		{Name: "urls", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "Broker URLs, tried in order: `tcp://host:1883` (or `mqtt://`), `tls://host:8883` (or `ssl://`, `mqtts://`). A bare `host:port` is tcp. Defaults to the embedded broker when `broker.embedded` is set, else `tcp://127.0.0.1:1883`.",
			Example:     []string{"tcp://127.0.0.1:1883"}},
		{Name: "broker", Type: spec.Object, Optional: true,
			Description: "An MQTT broker started inside this process, so that a pipeline needs nothing installed. Components of one process that name the same `listen` address share one broker (declare its settings on one of them, or the same on each). It keeps sessions in memory. Clients must authenticate (`users`); the process's own components connect with a per-process secret.",
			Example:     map[string]any{"embedded": true, "listen": "127.0.0.1:1883"},
			Children:    brokerFields()},
		{Name: "client_id", Type: spec.String, Optional: true,
			Description: "Client id; a persistent session is tied to it. Defaults to `sluice-<edge>-<pipeline>-<component>`, which stays the same across restarts but anyone can guess: on a broker where others may connect, make it secret (`${MQTT_CLIENT_ID}`, set per site) and keep it stable. Logs name it by a hash prefix only.",
			Example:     "${MQTT_CLIENT_ID}"},
		{Name: "version", Type: spec.String, Default: "5", Enum: []string{"3.1.1", "5"},
			Description: "MQTT protocol version.", Example: "3.1.1"},
		{Name: "username", Type: spec.String, Optional: true, Description: "User name.", Example: "${MQTT_USER}"},
		{Name: "password", Type: spec.String, Optional: true, Description: "Password.", Example: "${MQTT_PASSWORD}"},
		{Name: "tls", Type: spec.Object, Optional: true,
			Description: "TLS settings for `tls://` URLs. Paths are relative to the pipeline file; each file must be a regular file of at most 1 MiB.",
			Example:     map[string]any{"ca": "certs/ca.pem", "cert": "certs/edge.pem", "key": "certs/edge.key"},
			Children: []spec.Field{
				{Name: "ca", Type: spec.String, Optional: true, Description: "PEM file of the authorities that sign the broker's certificate (default: system roots)."},
				{Name: "cert", Type: spec.String, Optional: true, Description: "PEM client certificate."},
				{Name: "key", Type: spec.String, Optional: true, Description: "PEM client key."},
				{Name: "server_name", Type: spec.String, Optional: true, Description: "Name to check in the broker's certificate."},
				{Name: "insecure_skip_verify", Type: spec.Bool, Default: false, Description: "Accept any broker certificate (tests only)."},
			}},
		{Name: "clean_session", Type: spec.Bool, Default: false,
			Description: "Start a fresh session on connecting. The default keeps a persistent session, so that QoS 1 messages published while the engine was away, or received but not yet acknowledged, are delivered again."},
		{Name: "session_expiry", Type: spec.Duration, Default: "24h",
			Description: "MQTT 5: how long the broker keeps the persistent session after a disconnection.", Example: "7d"},
		{Name: "keep_alive", Type: spec.Duration, Default: "30s", Advanced: true, Description: "Keep-alive interval."},
		{Name: "connect_timeout", Type: spec.Duration, Default: "10s", Advanced: true, Description: "Time limit of one connection attempt."},
		{Name: "reconnect_min", Type: spec.Duration, Default: "100ms", Advanced: true,
			Description: "First delay between connection attempts; it doubles up to reconnect_max. (The sink's MQTT 3.1.1 connections wait at least 1s.)"},
		{Name: "reconnect_max", Type: spec.Duration, Default: "30s", Advanced: true, Description: "Longest delay between connection attempts."},
		{Name: "receive_maximum", Type: spec.Int, Default: 65535, Advanced: true,
			Description: "MQTT 5: QoS 1 messages the broker may send before the engine acknowledges them; beyond it the broker queues (Mosquitto: at most `max_queued_messages`, default 1000, then drops). MQTT 3.1.1 brokers decide this themselves (Mosquitto: `max_inflight_messages`, default 20): set it to that value so that the source flushes a batch as soon as the broker waits for acknowledgements."},
	}
}

// embeddedConfig is the broker field; the rest of its settings wait in
// embeddedByAddr for the component that starts the broker.
type embeddedConfig struct {
	enabled bool
	listen  string
}

// parseConnConfig reads the fields of connFields; defaultID is the client
// id used when none is configured.
func parseConnConfig(cfg *spec.Config, dir, defaultID string) (ClientOptions, embeddedConfig, spec.Errors) {
	var errs spec.Errors
	o := ClientOptions{
		URLs:           cfg.Strings("urls"),
		ClientID:       cfg.String("client_id"),
		Username:       cfg.String("username"),
		Password:       cfg.String("password"),
		CleanSession:   cfg.Bool("clean_session"),
		SessionExpiry:  cfg.Duration("session_expiry"),
		KeepAlive:      cfg.Duration("keep_alive"),
		ConnectTimeout: cfg.Duration("connect_timeout"),
		ReconnectMin:   cfg.Duration("reconnect_min"),
		ReconnectMax:   cfg.Duration("reconnect_max"),
		ReceiveMaximum: int(cfg.Int("receive_maximum")),
	}
	rel := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(dir, p)
		}
		return p
	}
	bc := cfg.Object("broker")
	emb := embeddedConfig{enabled: bc.Bool("embedded"), listen: bc.String("listen")}
	if emb.listen == "" {
		emb.listen = "127.0.0.1:1883"
	}
	var ownBroker *tls.Config // the embedded broker's TLS, when the component connects to it
	if emb.enabled {
		bo, bare, berrs := parseEmbedded(bc, rel)
		errs = append(errs, berrs...)
		if len(berrs) == 0 {
			registerEmbedded(bo, bare)
		}
		scheme := "tcp://"
		if bo.TLS != nil {
			scheme = "tls://"
		}
		if len(o.URLs) == 0 {
			o.URLs = []string{scheme + emb.listen}
		}
		if connectsTo(o.URLs, emb.listen) && o.Username == "" && o.Password == "" {
			// The process's own identity, which no device can forge.
			o.Username, o.Password = engineUser, engineSecret()
			if bo.TLS != nil && len(bo.TLS.Certificates) > 0 {
				ownBroker = bo.TLS
			}
		}
	}
	if o.ClientID == "" {
		o.ClientID = defaultID
	}
	switch cfg.String("version") {
	case "3.1.1":
		o.Version = 4
	default:
		o.Version = 5
	}
	if r := cfg.Int("receive_maximum"); r < 1 || r > 65535 {
		errs = append(errs, cfg.Errorf("receive_maximum", "receive_maximum must be between 1 and 65535, not %d", r))
	}
	if o.ReconnectMax < o.ReconnectMin {
		errs = append(errs, cfg.Errorf("reconnect_max", "reconnect_max must not be below reconnect_min"))
	}
	for _, u := range o.URLs {
		if _, err := parseBrokerURL(u); err != nil {
			errs = append(errs, cfg.Errorf("urls", "%v", err))
		}
	}
	if ownBroker != nil && cfg.Object("tls") == nil {
		o.TLS = pinnedTLS(ownBroker)
	}
	if tc := cfg.Object("tls"); tc != nil {
		if plain := plaintextURLs(o.URLs); len(plain) > 0 {
			errs = append(errs, cfg.Errorf("tls", "tls is set but %s would connect in plaintext: write tls://, ssl:// or mqtts:// URLs", strings.Join(plain, ", ")))
		}
		files := TLSFiles{CA: rel(tc.String("ca")), Cert: rel(tc.String("cert")), Key: rel(tc.String("key")),
			ServerName: tc.String("server_name"), InsecureSkipVerify: tc.Bool("insecure_skip_verify")}
		t, err := files.Config()
		if err != nil {
			errs = append(errs, cfg.Errorf("tls", "%v", err))
		}
		o.TLS = t
	}
	return o, emb, errs
}

// plaintextURLs returns the URLs (masked) that connect without TLS.
func plaintextURLs(urls []string) []string {
	var out []string
	for _, s := range urls {
		u, err := parseBrokerURL(s)
		if err != nil {
			continue // reported on its own
		}
		switch strings.ToLower(u.Scheme) {
		case "tcp", "mqtt":
			out = append(out, redact.String(s))
		}
	}
	return out
}

// connectsTo reports whether every URL names the listen address.
func connectsTo(urls []string, listen string) bool {
	for _, s := range urls {
		u, err := parseBrokerURL(s)
		if err != nil || u.Host != listen {
			return false
		}
	}
	return len(urls) > 0
}

// defaultClientID is sluice-[<edge>-]<pipeline>-<name> with characters
// brokers may refuse replaced.
func defaultClientID(edge, pipeline, name string) string {
	id := "sluice-" + pipeline + "-" + name
	if edge != "" {
		id = "sluice-" + edge + "-" + pipeline + "-" + name
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
}
