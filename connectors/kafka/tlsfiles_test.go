package kafka_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/kafka"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// TestTLSFiles: a certificate or key file that is a named pipe, a device
// or an empty file is refused when the sink is built (validate included),
// at once and located at its field.
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.pem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ tls, want string }{
		{"{enabled: true, cert_file: fifo, key_file: fifo}", "not a regular file (a named pipe)"},
		{"{enabled: true, cert_file: empty.pem, key_file: fifo}", "not a regular file (a named pipe)"},
		{"{enabled: true, cert_file: /dev/zero, key_file: /dev/zero}", "not a regular file (a character device)"},
		{"{enabled: true, ca_file: /dev/zero}", "not a regular file (a character device)"},
		{"{enabled: true, cert_file: empty.pem, key_file: empty.pem}", "failed to find any PEM data"},
	} {
		for _, dry := range []bool{true, false} {
			done := make(chan error, 1)
			go func() {
				_, err := kafka.New(outboundtest.Parse(t, kafka.Spec, "topic: t\ntls: "+tt.tls), engine.BuildContext{Dir: dir, DryRun: dry})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: New blocks", tt.tls) // the goroutine leaks: the test fails anyway
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "test.yaml:") {
				t.Errorf("%s (dry run %v): got %v, want %q with a location", tt.tls, dry, err, tt.want)
			}
		}
	}
}
