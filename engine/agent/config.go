package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Defaults of the edge configuration.
const (
	DefaultListen         = "127.0.0.1:7468"
	DefaultDataDir        = "sluice-data"
	DefaultMaxBundleBytes = 256 << 20
	DefaultKeepReleases   = 3
	// MaxConfigBytes bounds the edge configuration file.
	MaxConfigBytes = 1 << 20
	// maxLabels bounds the labels of an edge.
	maxLabels = protocol.MaxLabels
)

// ConfigSpec declares the fields of the edge configuration file
// (sluice.yaml), which `sluice run --config` reads to run as an edge agent.
var ConfigSpec = spec.Spec{
	Name:    "sluice.yaml",
	Summary: "The edge configuration: who this edge is, which keys it trusts, where it keeps its state and where its local API listens.",
	Description: "`sluice run --config sluice.yaml` runs the engine as an edge agent: it runs the release last applied " +
		"(or, before any, the `pipelines` listed here and the files named on the command line) and applies signed release " +
		"bundles imported through its local API (`sluice import`). Relative paths are relative to the configuration file. " +
		"See docs/coordination.md.",
	Fields: []spec.Field{
		{Name: "edge", Type: spec.String, Optional: true, Description: "Identity of this edge: matched against a bundle's `targets.edges` and used in outgoing message IDs. Defaults to the host name.", Example: "edge-01"},
		{Name: "data_dir", Type: spec.String, Default: DefaultDataDir, Description: "Directory of durable state: the buffers of cloud sinks; under `agent/`, the releases, the current release, the apply reports and the API token; under `hub/` (with a `hub` section), the buffers of the reports and heartbeats sent to the hub.", Example: "/var/lib/sluice"},
		{Name: "trust", Type: spec.String, Description: "Trusted Ed25519 public key file, or a directory of them (`*.pub`, `*.pem`): a bundle must be signed by one of them.", Example: "keys/release.pub"},
		{Name: "labels", Type: spec.Map, Elem: spec.String, Optional: true, Description: "Labels of this edge, matched against a bundle's `targets.labels` (every label a bundle names must have its value here).", Example: map[string]any{"site": "north"}},
		{Name: "api", Type: spec.Object, Optional: true, Description: "The local HTTP API `sluice import` and `sluice status` talk to. Every request needs the bearer token of `token_file`.", Children: []spec.Field{
			{Name: "listen", Type: spec.String, Default: DefaultListen, Description: "host:port the API listens on; \":port\" binds 127.0.0.1. A non-loopback address is logged as a warning.", Example: "127.0.0.1:7468"},
			{Name: "token_file", Type: spec.String, Optional: true, Description: "File holding the API's bearer token, created (mode 0600, 32 random bytes in hex) when missing; it must be a regular file of the engine's user that others may not read. Defaults to `<data_dir>/agent/api.token`.", Example: "/etc/sluice/api.token"},
		}},
		{Name: "pipelines", Type: spec.List, Elem: spec.String, Optional: true, Description: "Pipeline files or directories run while no release has been applied.", Example: []any{"pipelines/"}},
		{Name: "max_bundle_bytes", Type: spec.Int, Default: DefaultMaxBundleBytes, Description: "Largest bundle file accepted by an import, in bytes.", Example: 67108864, Advanced: true},
		{Name: "keep_releases", Type: spec.Int, Default: DefaultKeepReleases, Description: "Unpacked releases kept on disk, the running one included; older ones are removed.", Example: 5, Advanced: true},
		hubField(),
		logsField(),
		healthField(),
		controlField(),
	},
	Example: `edge: edge-01
data_dir: /var/lib/sluice
trust: keys/release.pub
labels: {site: north}
api: {listen: 127.0.0.1:7468}
pipelines: [pipelines/]
`,
}

// Config is a parsed edge configuration. Paths are resolved against the
// configuration file's directory.
type Config struct {
	// File is the configuration file's path.
	File           string
	Edge           string
	DataDir        string
	Trust          string
	Labels         map[string]string
	Listen         string
	TokenFile      string
	Pipelines      []string
	MaxBundleBytes int64
	KeepReleases   int
	// Hub is the hub this edge takes releases from and reports to; nil
	// when the configuration has no hub.
	Hub *HubConfig
	// Logs configures the log file under DataDir/logs.
	Logs LogsConfig
	// Control is the command arbiter and its downlink; nil when the
	// configuration has no control section.
	Control *ControlConfig
	// Health configures the health alerts.
	Health HealthConfig
}

// AgentDir is the agent's state directory, DataDir/agent.
func (c *Config) AgentDir() string { return filepath.Join(c.DataDir, "agent") }

// LoadConfig reads and checks an edge configuration file. Every problem is
// returned with its location.
func LoadConfig(name string) (*Config, spec.Errors) {
	data, err := spec.ReadConfigFile(name, MaxConfigBytes)
	if err != nil {
		return nil, spec.Errors{spec.Errorf(spec.Pos{File: name}, "%v", unwrapPath(err))}
	}
	return ParseConfig(name, data)
}

// ParseConfig checks the bytes of an edge configuration file named name.
func ParseConfig(name string, data []byte) (*Config, spec.Errors) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, spec.Errors{spec.Errorf(spec.Pos{File: name, Line: 1, Col: 1}, "file is empty")}
		}
		return nil, spec.Errors{spec.Errorf(spec.Pos{File: name}, "invalid YAML: %v", err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, spec.Errors{spec.Errorf(spec.Pos{File: name}, "an edge configuration is one YAML document")}
	}
	n := spec.Resolve(&root)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, spec.Errors{spec.Errorf(spec.Pos{File: name, Line: root.Line, Col: root.Column}, "expected a mapping")}
	}
	cfg, errs := ConfigSpec.Parse(name, n)
	if len(errs) > 0 {
		return nil, errs
	}
	base := filepath.Dir(name)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c := &Config{
		File:           name,
		Edge:           cfg.String("edge"),
		DataDir:        abs(cfg.String("data_dir")),
		Trust:          abs(cfg.String("trust")),
		Labels:         cfg.StringMap("labels"),
		Listen:         DefaultListen,
		MaxBundleBytes: cfg.Int("max_bundle_bytes"),
		KeepReleases:   int(cfg.Int("keep_releases")),
	}
	if api := cfg.Object("api"); api != nil {
		c.Listen = ListenAddr(api.String("listen"))
		c.TokenFile = abs(api.String("token_file"))
		if err := CheckListen(c.Listen); err != nil {
			errs = append(errs, api.Errorf("listen", "api.listen: %v", err))
		}
	}
	for _, p := range cfg.Strings("pipelines") {
		c.Pipelines = append(c.Pipelines, abs(p))
	}
	if c.Edge == "" {
		h, err := os.Hostname()
		if err != nil {
			errs = append(errs, cfg.Errorf("edge", "no edge id and no host name: %v", err))
		}
		c.Edge = h
	}
	if c.TokenFile == "" {
		c.TokenFile = filepath.Join(c.AgentDir(), "api.token")
	}
	if c.MaxBundleBytes < 1<<10 {
		errs = append(errs, cfg.Errorf("max_bundle_bytes", "max_bundle_bytes must be at least 1024"))
	}
	if c.KeepReleases < 1 || c.KeepReleases > 1000 {
		errs = append(errs, cfg.Errorf("keep_releases", "keep_releases must be from 1 to 1000"))
	}
	logs, lerrs := parseLogs(cfg)
	c.Logs = logs
	errs = append(errs, lerrs...)
	hc, herrs := parseHealth(cfg)
	c.Health = hc
	errs = append(errs, herrs...)
	if len(c.Labels) > maxLabels {
		errs = append(errs, cfg.Errorf("labels", "at most %d labels", maxLabels))
	}
	if s := cfg.Object("control"); s != nil {
		cc, cerrs := parseControl(s, c.Edge)
		errs = append(errs, cerrs...)
		c.Control = cc
	}
	if h := cfg.Object("hub"); h != nil {
		if err := protocol.CheckEdgeID(c.Edge); err != nil {
			errs = append(errs, cfg.Errorf("edge", "an edge that talks to a hub needs an edge id of 1 to %d of A-Z a-z 0-9 _ -: %v", protocol.MaxEdgeIDLen, err))
		}
		hub, herrs := parseHub(h, base)
		errs = append(errs, herrs...)
		// The hub stores labels as text: a label it cannot hold would
		// set every heartbeat of this edge aside.
		for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
			for _, s := range []string{k, c.Labels[k]} {
				if len(s) > protocol.MaxLabelBytes || strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
					errs = append(errs, cfg.Errorf("labels", "label %.40q: an edge that talks to a hub needs label keys and values of at most %d bytes of text without NUL", k, protocol.MaxLabelBytes))
					break
				}
			}
		}
		c.Hub = hub
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return c, nil
}

// ListenAddr turns ":port" into "127.0.0.1:port": the API binds to other
// interfaces only when told so.
func ListenAddr(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "127.0.0.1" + addr
	}
	return addr
}

// CheckListen checks that addr is host:port, the host an IP address or a
// host name and the port a number.
func CheckListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" || port == "" {
		return fmt.Errorf("%q: host and port are required", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	if net.ParseIP(host) == nil && !hostName(host) {
		return fmt.Errorf("%q: the host must be an IP address or a host name", addr)
	}
	return nil
}

// hostName says whether s is a host name: letters, digits, '-' and '.'.
func hostName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return len(s) <= 253
}

// unwrapPath drops the path of an *os.PathError, which the position
// already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
