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
	"github.com/sluice-edge/sluice/engine/topic"
)

// Defaults of the control section.
const (
	DefaultControlTimeout   = 30 * time.Second
	DefaultControlMaxExpiry = 24 * time.Hour
)

// ControlConfig is the control section of an edge configuration: the
// arbiter every command to a device goes through (docs/control.md), the
// MQTT broker its devices listen on, and the devices reached there over
// generic JSON command topics rather than the EnOS downlink.
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
	// JSONDevices are the devices reached over generic JSON command
	// topics instead of the EnOS downlink.
	JSONDevices []ControlJSONDevices
}

// ControlJSONDevices declares devices that are not EnOS devices: their
// commands go over a generic MQTT JSON command topic (docs/mqtt.md) on the
// control broker.
type ControlJSONDevices struct {
	// CommandTopic and ReplyTopic are the templates of the topics
	// ({asset}, {product}, {point}); ReplyTopic is never empty once
	// parsed.
	CommandTopic, ReplyTopic string
	// Assets and Products select the devices: a command whose asset is
	// one of Assets, or whose product is one of Products.
	Assets, Products []string
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
			"before the EnOS MQTT downlink — or, for the devices of `json_devices`, a generic JSON command topic — sends it to the device.",
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
			{Name: "json_devices", Type: spec.List, Elem: spec.Object, Optional: true,
				Description: "Devices that are not EnOS devices, reached over a generic MQTT JSON command topic on the same broker: their commands go through the arbiter like the others, one point per command (`{\"id\":...,\"point\":...,\"value\":...}`), and the device answers `{\"id\":...,\"code\":200}` on the reply topic. A command goes over the first entry naming its asset, else the first naming its product, else the EnOS downlink. An `mqtt` sink with a `command_topic` needs that topic declared here.",
				Example:     []any{map[string]any{"command_topic": "plant/{asset}/cmd", "reply_topic": "plant/{asset}/reply", "assets": []any{"pump-1", "pump-2"}}},
				Children: []spec.Field{
					{Name: "command_topic", Type: spec.String, Description: "Template of the command topic: `{asset}` (required), `{product}` and `{point}` stand for whole segments.", Example: "plant/{asset}/cmd"},
					{Name: "reply_topic", Type: spec.String, Optional: true, Description: "Template of the reply topic (`{asset}` required; default: command_topic + `/reply`). It must not overlap a command topic or another entry's reply topic.", Example: "plant/{asset}/reply"},
					{Name: "assets", Type: spec.List, Elem: spec.String, Optional: true, Description: "Device keys reached over this topic.", Example: []any{"pump-1"}},
					{Name: "products", Type: spec.List, Elem: spec.String, Optional: true, Description: "Product keys whose devices are reached over this topic (a command for them must name its product).", Example: []any{"pump"}},
				}},
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
	errs = append(errs, parseJSONDevices(s, cc)...)
	return cc, errs
}

// parseJSONDevices reads control.json_devices: topics that parse, do not
// overlap, and devices named once.
func parseJSONDevices(s *spec.Config, cc *ControlConfig) spec.Errors {
	var errs spec.Errors
	type topics struct{ cmd, reply topic.Template }
	var seen []topics
	owner := map[string]string{} // "asset x" / "product x" -> command topic
	for i, o := range s.Objects("json_devices") {
		jd := ControlJSONDevices{CommandTopic: o.String("command_topic"), ReplyTopic: o.String("reply_topic"),
			Assets: o.Strings("assets"), Products: o.Strings("products")}
		if jd.ReplyTopic == "" {
			jd.ReplyTopic = jd.CommandTopic + "/reply"
		}
		at := fmt.Sprintf("control.json_devices[%d]", i)
		cmd, err := topic.Parse(jd.CommandTopic)
		if err != nil {
			errs = append(errs, o.Errorf("command_topic", "%s.command_topic: %v", at, err))
		}
		reply, rerr := topic.Parse(jd.ReplyTopic)
		if rerr != nil {
			errs = append(errs, o.Errorf("reply_topic", "%s.reply_topic: %v", at, rerr))
		}
		if err == nil && rerr == nil {
			if topic.Overlaps(cmd, reply) {
				errs = append(errs, o.Errorf("reply_topic", "%s: reply topic %q matches the command topic %q", at, jd.ReplyTopic, jd.CommandTopic))
			}
			for _, p := range seen {
				if topic.Overlaps(reply, p.reply) || topic.Overlaps(reply, p.cmd) || topic.Overlaps(cmd, p.reply) {
					errs = append(errs, o.Errorf("reply_topic", "%s: topics %q and %q overlap those of %q: a reply would reach two entries", at, jd.CommandTopic, jd.ReplyTopic, p.cmd.String()))
				}
			}
			seen = append(seen, topics{cmd, reply})
		}
		if len(jd.Assets)+len(jd.Products) == 0 {
			errs = append(errs, o.Errorf("command_topic", "%s: name the assets or products reached over %q", at, jd.CommandTopic))
		}
		for _, set := range []struct {
			what, field string
			names       []string
		}{{"asset", "assets", jd.Assets}, {"product", "products", jd.Products}} {
			for _, n := range set.names {
				if err := topic.CheckKey(n, control.MaxKeyLen); err != nil {
					errs = append(errs, o.Errorf(set.field, "%s.%s: %q: %v", at, set.field, n, err))
					continue
				}
				if prev, dup := owner[set.what+" "+n]; dup {
					errs = append(errs, o.Errorf(set.field, "%s.%s: %s %q is already reached over %q", at, set.field, set.what, n, prev))
				}
				owner[set.what+" "+n] = jd.CommandTopic
			}
		}
		cc.JSONDevices = append(cc.JSONDevices, jd)
	}
	return errs
}
