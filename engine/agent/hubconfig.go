package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/natsurl"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Defaults of the hub configuration.
const (
	DefaultHeartbeat         = 30 * time.Second
	DefaultReportsMaxBytes   = "64MiB"
	DefaultHeartbeatMaxBytes = "1MiB"
	// MinHubBufferBytes bounds the hub buffers from below: a quota
	// smaller than a few segments cannot hold a report.
	MinHubBufferBytes = 64 << 10
)

// HubConfig is the hub section of an edge configuration: the NATS
// JetStream deployment the edge takes releases from and sends its apply
// reports and heartbeats to (docs/format/hub-protocol.md).
type HubConfig struct {
	// URL is the server URL, several separated by commas.
	URL string
	// User and Password, Token, or Credentials (the bytes of
	// CredentialsFile, read and checked when the configuration loads)
	// authenticate the edge. They are secrets: never logged.
	User, Password, Token string
	CredentialsFile       string
	Credentials           []byte
	// TLS is the TLS configuration; nil without tls.enabled.
	TLS *tls.Config
	// Heartbeat is the interval between heartbeats.
	Heartbeat time.Duration
	// ReportsMaxBytes bounds the reports buffer (full: new reports wait,
	// none is dropped); HeartbeatMaxBytes bounds the heartbeat buffer
	// (full: the oldest heartbeats are dropped).
	ReportsMaxBytes, HeartbeatMaxBytes int64
}

// hubField declares the hub section of sluice.yaml.
func hubField() spec.Field {
	t := outbound.TLSField()
	t.Description = "TLS settings of the connection to the hub. Relative paths are resolved against the configuration file's directory; each file must be a regular file of at most 1 MiB."
	return spec.Field{
		Name: "hub", Type: spec.Object, Optional: true,
		Description: "The hub this edge takes releases from and reports to, over NATS JetStream (docs/format/hub-protocol.md). " +
			"The edge watches its desired release, fetches and applies the bundle it names, and sends its apply reports " +
			"and heartbeats through durable buffers under `<data_dir>/hub/`, so that what it reports while the hub is " +
			"unreachable arrives afterwards with its original time. The edge id must be 1 to 64 of `A-Z a-z 0-9 _ -`.",
		Example: map[string]any{"url": "nats://hub.example.com:4222", "credentials_file": "edge-01.creds", "heartbeat": "30s"},
		Children: []spec.Field{
			{Name: "url", Type: spec.String, Description: "NATS server URL; several URLs are separated by commas. The edge starts while the servers are down and reconnects forever.", Example: "nats://hub-1:4222,nats://hub-2:4222"},
			{Name: "user", Type: spec.String, Optional: true, Description: "User name."},
			{Name: "password", Type: spec.String, Optional: true, Description: "Password of user."},
			{Name: "token", Type: spec.String, Optional: true, Description: "Authentication token."},
			{Name: "credentials_file", Type: spec.String, Optional: true, Description: "NATS credentials file (JWT and NKey seed), a regular file of at most 1 MiB; read and checked when the configuration loads."},
			t,
			{Name: "heartbeat", Type: spec.Duration, Default: spec.FormatDuration(DefaultHeartbeat), Description: "Interval between heartbeats (release, pipeline states, backlog); one is also sent at start."},
			{Name: "reports_max_bytes", Type: spec.String, Default: DefaultReportsMaxBytes, Advanced: true,
				Description: "Disk quota of the reports buffer (`<data_dir>/hub/reports`). When full, new reports wait and are sent again from `reports.jsonl` at the next start: none is dropped."},
			{Name: "heartbeat_max_bytes", Type: spec.String, Default: DefaultHeartbeatMaxBytes, Advanced: true,
				Description: "Disk quota of the heartbeat buffer (`<data_dir>/hub/heartbeat`). When full, the oldest heartbeats are dropped, so a long outage never fills the disk."},
		},
	}
}

// parseHub reads the hub section; base is the configuration file's
// directory.
func parseHub(h *spec.Config, base string) (*HubConfig, spec.Errors) {
	var errs spec.Errors
	hc := &HubConfig{
		URL:       strings.TrimSpace(h.String("url")),
		User:      h.String("user"),
		Password:  h.String("password"),
		Token:     h.String("token"),
		Heartbeat: h.Duration("heartbeat"),
	}
	redact.RegisterURLPasswords(hc.URL)
	redact.Register(hc.Password, hc.Token)
	if err := natsurl.Check(hc.URL); err != nil {
		errs = append(errs, h.Errorf("url", "hub.url: %v", err))
	}
	if hc.Password != "" && hc.User == "" {
		errs = append(errs, h.Errorf("password", "hub.password needs hub.user"))
	}
	n := 0
	for _, name := range []string{"user", "token", "credentials_file"} {
		if h.String(name) != "" {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, h.Errorf("user", "hub: set one of user (and password), token and credentials_file"))
	}
	if f := h.String("credentials_file"); f != "" {
		if !filepath.IsAbs(f) {
			f = filepath.Join(base, f)
		}
		hc.CredentialsFile = f
		data, err := hubCredentials(f)
		if err != nil {
			errs = append(errs, h.Errorf("credentials_file", "hub.credentials_file: %v", err))
		}
		hc.Credentials = data
	}
	tlsc, err := outbound.TLSConfig(h, engine.BuildContext{Dir: base, DryRun: true})
	if err != nil {
		var se *spec.Error
		if errors.As(err, &se) {
			errs = append(errs, se)
		} else {
			errs = append(errs, h.Errorf("tls", "hub.tls: %v", err))
		}
	}
	hc.TLS = tlsc
	if hc.Heartbeat < 100*time.Millisecond || hc.Heartbeat > 24*time.Hour {
		errs = append(errs, h.Errorf("heartbeat", "hub.heartbeat must be from 100ms to 24h, got %v", hc.Heartbeat))
	}
	for _, q := range []struct {
		name string
		dst  *int64
	}{{"reports_max_bytes", &hc.ReportsMaxBytes}, {"heartbeat_max_bytes", &hc.HeartbeatMaxBytes}} {
		mb, err := forward.ParseMaxBytes(h.String(q.name))
		switch {
		case err != nil:
			errs = append(errs, h.Errorf(q.name, "hub.%s: %v", q.name, err))
		case mb.Bytes < MinHubBufferBytes || mb.Share > 0:
			errs = append(errs, h.Errorf(q.name, "hub.%s must be a size of at least %d bytes (64KiB)", q.name, MinHubBufferBytes))
		default:
			*q.dst = mb.Bytes
		}
	}
	return hc, errs
}

// hubCredentials reads a NATS credentials file of at most
// outbound.MaxSecretFileBytes and checks it with the client's parsers:
// the JWT must be there and the seed must sign.
func hubCredentials(path string) ([]byte, error) {
	data, err := spec.ReadConfigFile(path, outbound.MaxSecretFileBytes)
	if err != nil {
		return nil, unwrapPath(err)
	}
	var o natsgo.Options
	if err := natsgo.UserCredentialBytes(data)(&o); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if jwt, err := o.UserJWT(); err != nil || strings.TrimSpace(jwt) == "" {
		return nil, fmt.Errorf("%s holds no user JWT", path)
	}
	if _, err := o.SignatureCB([]byte("check")); err != nil {
		return nil, fmt.Errorf("%s holds no usable user seed", path)
	}
	return data, nil
}
