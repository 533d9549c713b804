package mqtt

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// TestTLSFilesBounded: the CA, certificate and key files of a client's tls
// field are read bounded (outbound.MaxSecretFileBytes) and must be regular
// files: a device, a named pipe or a huge file is refused at once.
func TestTLSFilesBounded(t *testing.T) {
	_, ca := selfSigned(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, outbound.MaxSecretFileBytes+1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"valid ca", TLSFiles{CA: ca}, ""},
		{"ca device", TLSFiles{CA: "/dev/zero"}, "tls ca: read /dev/zero: not a regular file (a character device)"},
		{"ca fifo", TLSFiles{CA: fifo}, "not a regular file (a named pipe)"},
		{"ca too large", TLSFiles{CA: big}, "larger than the 1 MiB limit"},
		{"cert fifo", TLSFiles{Cert: fifo, Key: ca}, "tls cert: read " + fifo + ": not a regular file (a named pipe)"},
		{"key device", TLSFiles{Cert: ca, Key: "/dev/zero"}, "tls key: read /dev/zero: not a regular file (a character device)"},
		{"key too large", TLSFiles{Cert: ca, Key: big}, "larger than the 1 MiB limit"},
		{"key of a certificate", TLSFiles{Cert: ca, Key: ca}, "tls cert/key:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := enginetest.Within(t, 10*time.Second, "Config", func() error {
				_, err := tt.files.Config()
				return err
			})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestBrokerFilesBounded: the embedded broker's certificate, key, client CA
// and password file are read like every secret file: what is not a regular
// file, or is over the limit, is refused at once (a cert_file of /dev/zero
// used to be read without end).
func TestBrokerFilesBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	for _, tc := range []struct{ cert, key, ca string }{
		{"/dev/zero", "/dev/zero", ""},
		{fifo, fifo, ""},
	} {
		if _, err := brokerTLS(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("brokerTLS(%s): %v, want a refusal", tc.cert, err)
		}
	}
	opts := &BrokerOptions{}
	for _, p := range []string{"/dev/zero", fifo} {
		if err := readPasswordFile(p, opts, map[string]int{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("readPasswordFile(%s): %v, want a refusal", p, err)
		}
	}
}
