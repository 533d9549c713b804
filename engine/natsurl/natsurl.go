// Package natsurl checks NATS server URLs the way the NATS client reads
// them, so that a URL it would refuse is a configuration error found when
// the configuration loads, not at the first connection.
package natsurl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-edge/sluice/engine/redact"
)

// Check parses the server URLs (comma-separated, as the client takes
// them): nats://, tls://, ws:// or wss://, a host and a port in 1..65535
// (see redact.ParseURL). A URL without a scheme is a nats:// URL.
// Passwords are masked in the error.
func Check(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("no server URL")
	}
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return errors.New("empty server URL in the list")
		}
		full := raw
		if !strings.Contains(full, "://") {
			full = "nats://" + full
		}
		u, err := redact.ParseURL(full)
		if err != nil {
			return err
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("server URL %s: scheme %q is not one of nats, tls, ws, wss", redact.URL(raw), u.Scheme)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("server URL %s has no host", redact.URL(raw))
		}
	}
	return nil
}
