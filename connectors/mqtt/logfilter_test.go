package mqtt

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestLogFilterHidesPayloads: the broker library's log lines show packets
// as their type, topic and size, never their payload or password, also
// inside groups and attributes given to With.
func TestLogFilterHidesPayloads(t *testing.T) {
	var buf bytes.Buffer
	f := &logFilter{next: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), ev: newEventLog(slog.New(slog.DiscardHandler))}
	pk := packets.Packet{TopicName: "/sys/p/d/thing/measurepoint/post", Payload: []byte("PAYLOAD-MARKER")}
	pk.Connect.Password = []byte("PASSWORD-MARKER")
	log := slog.New(f)
	log.Debug("packet", "pk", pk, "ptr", &pk, slog.Group("g", "pk", pk, slog.Group("inner", "pk", &pk)))
	log.With("pk", pk).Debug("with")
	out := buf.String()
	if strings.Contains(out, "MARKER") || strings.Contains(out, "Payload") || strings.Contains(out, "Password") {
		t.Fatalf("a payload or password reached the log:\n%s", out)
	}
	if strings.Count(out, "measurepoint/post") < 5 {
		t.Fatalf("packets not shown by topic:\n%s", out)
	}
}
