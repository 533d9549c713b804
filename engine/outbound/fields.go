package outbound

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// EncodingFields declares the encoding fields every publisher type has:
// encoding (default def) and batch_rows.
func EncodingFields(def Encoding) []spec.Field {
	return []spec.Field{
		{
			Name: "encoding", Type: spec.String, Default: string(def), Enum: Encodings(),
			Description: "Payload format: `json` (one EnOS-like JSON message per row), `json_batch` " +
				"(one JSON message per run of rows) or `arrow` (one Arrow IPC stream per run of rows).",
			Example: "json_batch",
		},
		{
			Name: "batch_rows", Type: spec.Int, Default: DefaultBatchRows,
			Description: "Most rows in one `json_batch` or `arrow` message: each batch the sink accepts is cut " +
				"into messages of this many rows from its first row, and the cut is kept with the rows (the " +
				"same messages, with the same IDs, from every lane, after a restart and in a replay). 0 sends " +
				"each accepted batch as one message. Keep messages below the broker's size limit.",
			Example: 512, Advanced: true,
		},
	}
}

// TLSField declares an optional "tls" object: enabled, ca_file,
// cert_file, key_file, server_name and insecure_skip_verify.
func TLSField() spec.Field {
	return spec.Field{
		Name: "tls", Type: spec.Object, Optional: true, Advanced: true,
		Description: "TLS settings. Relative paths are resolved against the pipeline file's directory; each file must be a regular file of at most 1 MiB.",
		Example:     map[string]any{"enabled": true, "ca_file": "certs/ca.pem"},
		Children: []spec.Field{
			{Name: "enabled", Type: spec.Bool, Default: false, Description: "Use TLS."},
			{Name: "ca_file", Type: spec.String, Optional: true, Description: "PEM file of the CA certificates that sign the server's certificate (default: the system pool)."},
			{Name: "cert_file", Type: spec.String, Optional: true, Description: "PEM client certificate for mutual TLS."},
			{Name: "key_file", Type: spec.String, Optional: true, Description: "PEM private key of cert_file."},
			{Name: "server_name", Type: spec.String, Optional: true, Description: "Server name to verify (default: the host of the URL)."},
			{Name: "insecure_skip_verify", Type: spec.Bool, Default: false, Description: "Do not verify the server's certificate (tests only)."},
		},
	}
}

// MaxSecretFileBytes bounds a file of keys or credentials (a PEM
// certificate, key or CA bundle, a credentials or token file): such files
// are a few kilobytes, and a larger one, a device or a named pipe is a
// mistake to refuse, not something to read.
const MaxSecretFileBytes = 1 << 20

// TLSConfig builds the TLS configuration of the "tls" field; it returns
// nil when the field is absent or not enabled. Settings that would be
// ignored (any of them without enabled: true) are an error, and
// insecure_skip_verify logs a warning when the sink starts. The files are
// read with spec.ReadConfigFile, at most MaxSecretFileBytes each. Errors
// are located at the offending field.
func TLSConfig(cfg *spec.Config, bc engine.BuildContext) (*tls.Config, error) {
	t := cfg.Object("tls")
	if t == nil {
		return nil, nil
	}
	if !t.Bool("enabled") {
		for _, name := range []string{"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"} {
			if t.Has(name) {
				return nil, t.Errorf(name, "tls.%s is ignored without tls.enabled: true; enable TLS or remove it", name)
			}
		}
		return nil, nil
	}
	if t.Bool("insecure_skip_verify") && !bc.DryRun && bc.Log != nil {
		bc.Log.Warn("TLS without verifying the server's certificate (tls.insecure_skip_verify): anyone on the path can read and change the traffic")
	}
	path := func(name string) string {
		p := t.String(name)
		if p != "" && !filepath.IsAbs(p) && bc.Dir != "" {
			p = filepath.Join(bc.Dir, p)
		}
		return p
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.String("server_name"),
		InsecureSkipVerify: t.Bool("insecure_skip_verify"), //nolint:gosec // opt-in, documented as tests only
	}
	if f := path("ca_file"); f != "" {
		pem, err := spec.ReadConfigFile(f, MaxSecretFileBytes)
		if err != nil {
			return nil, t.Errorf("ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, t.Errorf("ca_file", "no PEM certificate in %s", f)
		}
		c.RootCAs = pool
	}
	cert, key := path("cert_file"), path("key_file")
	if (cert == "") != (key == "") {
		return nil, t.Errorf("cert_file", "cert_file and key_file go together")
	}
	if cert != "" {
		certPEM, err := spec.ReadConfigFile(cert, MaxSecretFileBytes)
		if err != nil {
			return nil, t.Errorf("cert_file", "%v", err)
		}
		keyPEM, err := spec.ReadConfigFile(key, MaxSecretFileBytes)
		if err != nil {
			return nil, t.Errorf("key_file", "%v", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, t.Errorf("cert_file", "%s and %s: %v", cert, key, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// New returns a Publisher around pub with the encoding fields of cfg
// (declared with EncodingFields).
func New(cfg *spec.Config, pub message.Publisher, topic string, permanent func(error) bool) (*Publisher, error) {
	enc, err := ParseEncoding(cfg.String("encoding"))
	if err != nil {
		return nil, cfg.Errorf("encoding", "%v", err)
	}
	rows := cfg.Int("batch_rows")
	if rows < 0 {
		return nil, cfg.Errorf("batch_rows", "batch_rows must be 0 or more, got %d", rows)
	}
	return &Publisher{Publisher: pub, Topic: topic, Encoding: enc, BatchRows: int(rows), Permanent: permanent}, nil
}

// Positive checks that a duration or number field is above zero.
func Positive(cfg *spec.Config, name string) error {
	switch v := cfg.Value(name).(type) {
	case int64:
		if v <= 0 {
			return cfg.Errorf(name, "%s must be above 0, got %d", name, v)
		}
	default:
		if d := cfg.Duration(name); d <= 0 {
			return cfg.Errorf(name, "%s must be above 0, got %v", name, d)
		}
	}
	return nil
}

// Require checks that a string field is not empty.
func Require(cfg *spec.Config, name string) error {
	if cfg.String(name) == "" {
		return cfg.Errorf(name, "%s must not be empty", name)
	}
	return nil
}
