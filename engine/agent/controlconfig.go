package agent

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Defaults of the control section.
const (
	DefaultControlTimeout   = 30 * time.Second
	DefaultControlMaxExpiry = 24 * time.Hour
)

// ControlConfig is the control section of an edge configuration: the
// arbiter every command to a device goes through (docs/control.md) and
// the MQTT broker its devices listen on.
type ControlConfig struct {
	// BrokerURL is the MQTT broker of the devices (EnOS downlink topics);
	// ClientID, Username and Password connect to it (Password is a
	// secret: never logged).
	BrokerURL, ClientID, Username, Password string
	// Timeout is the default reply timeout; MaxExpiry bounds commands'
	// expiries and leases.
	Timeout, MaxExpiry time.Duration
	// Classes orders the priority classes, highest first; Origins maps
	// each origin to the highest class it may claim. Both are nil for the
	// defaults.
	Classes []string
	Origins map[string]string
	// NoSync leaves the log's writes to the operating system.
	NoSync bool
}

// ControlDir is the directory of the control log, DataDir/control.
func (c *Config) ControlDir() string { return filepath.Join(c.DataDir, "control") }

// controlField declares the control section of sluice.yaml.
func controlField() spec.Field {
	return spec.Field{
		Name: "control", Type: spec.Object, Optional: true,
		Description: "Control coordination (docs/control.md): every command to a device — from local applications through the " +
			"local API's `/v1/control/` endpoints, the cloud, third-party systems or rules — becomes a durable record under " +
			"`<data_dir>/control/` and goes through one arbiter (priority classes, leases, expiry, supersede, idempotency keys) " +
			"before the EnOS MQTT downlink sends it to the device.",
		Example: map[string]any{"broker": "tcp://127.0.0.1:1883", "timeout": "30s"},
		Children: []spec.Field{
			{Name: "broker", Type: spec.String, Description: "URL of the MQTT broker the devices listen on (tcp://, mqtt://, ssl://, tls:// or mqtts://).", Example: "tcp://127.0.0.1:1883"},
			{Name: "client_id", Type: spec.String, Optional: true, Description: "MQTT client id of the downlink. Defaults to `sluice-control-<edge>`."},
			{Name: "username", Type: spec.String, Optional: true, Description: "MQTT user name."},
			{Name: "password", Type: spec.String, Optional: true, Description: "MQTT password of username."},
			{Name: "timeout", Type: spec.Duration, Default: spec.FormatDuration(DefaultControlTimeout), Description: "How long a sent command waits for the device's reply before it times out, when the command sets none."},
			{Name: "max_expiry", Type: spec.Duration, Default: spec.FormatDuration(DefaultControlMaxExpiry), Advanced: true, Description: "How far ahead a command's expiry and a lease may reach; further is refused as malformed."},
			{Name: "classes", Type: spec.List, Elem: spec.String, Optional: true, Advanced: true, Description: "Priority classes, highest first. Defaults to `[safety, operator, cloud, rule]`.", Example: []any{"safety", "operator", "cloud", "rule"}},
			{Name: "origins", Type: spec.Map, Elem: spec.String, Optional: true, Advanced: true, Description: "For each origin (`local`, `third-party`, `cloud`, `rule`), the highest class its commands and leases may claim; an origin missing here cannot issue commands. Defaults to local: safety, third-party: operator, cloud: cloud, rule: rule.", Example: map[string]any{"local": "safety", "cloud": "cloud"}},
			{Name: "no_sync", Type: spec.Bool, Default: false, Advanced: true, Description: "Leave the control log's writes to the operating system instead of syncing each: faster, but a power cut may lose the last records (a crash of the process does not)."},
		},
	}
}

// parseControl reads the control section.
func parseControl(s *spec.Config, edge string) (*ControlConfig, spec.Errors) {
	var errs spec.Errors
	cc := &ControlConfig{
		BrokerURL: strings.TrimSpace(s.String("broker")),
		ClientID:  s.String("client_id"),
		Username:  s.String("username"),
		Password:  s.String("password"),
		Timeout:   s.Duration("timeout"),
		MaxExpiry: s.Duration("max_expiry"),
		Classes:   s.Strings("classes"),
		Origins:   s.StringMap("origins"),
		NoSync:    s.Bool("no_sync"),
	}
	redact.RegisterURLPasswords(cc.BrokerURL)
	redact.Register(cc.Password)
	if u, err := url.Parse(cc.BrokerURL); err != nil || u.Host == "" ||
		!slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts"}, u.Scheme) {
		errs = append(errs, s.Errorf("broker", "control.broker: want tcp://host:port (or mqtt, ssl, tls, mqtts), got %.80q", redact.URL(cc.BrokerURL)))
	}
	if cc.Password != "" && cc.Username == "" {
		errs = append(errs, s.Errorf("password", "control.password needs control.username"))
	}
	if cc.ClientID == "" {
		cc.ClientID = "sluice-control-" + edge
	}
	if cc.Timeout <= 0 || cc.Timeout > 10*time.Minute {
		errs = append(errs, s.Errorf("timeout", "control.timeout must be more than 0 and at most 10m, got %v", cc.Timeout))
	}
	if cc.MaxExpiry < time.Minute || cc.MaxExpiry > 30*24*time.Hour {
		errs = append(errs, s.Errorf("max_expiry", "control.max_expiry must be from 1m to 720h, got %v", cc.MaxExpiry))
	}
	seen := map[string]bool{}
	for _, c := range cc.Classes {
		if c == "" || seen[c] {
			errs = append(errs, s.Errorf("classes", "control.classes: %q is empty or listed twice", c))
		}
		seen[c] = true
	}
	if len(cc.Classes) > 0 && len(cc.Origins) == 0 {
		errs = append(errs, s.Errorf("classes", "control.classes needs control.origins: the default origins name the default classes"))
	}
	if len(cc.Classes) > 16 {
		errs = append(errs, s.Errorf("classes", "control.classes: at most 16"))
	}
	for o, c := range cc.Origins {
		known := seen[c]
		if len(cc.Classes) == 0 {
			known = slices.Contains(control.DefaultClasses, c)
		}
		if !known {
			errs = append(errs, s.Errorf("origins", "control.origins: %s: unknown class %q", o, c))
		}
		if _, ok := control.DefaultOriginClasses[o]; !ok {
			errs = append(errs, s.Errorf("origins", "control.origins: unknown origin %q (local, third-party, cloud, rule)", fmt.Sprint(o)))
		}
	}
	return cc, errs
}
