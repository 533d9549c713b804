package outbound_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// writePair writes a self-signed certificate and its key as PEM files in
// dir.
func writePair(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestTLSConfigFiles: the CA, certificate and key files are read bounded
// (outbound.MaxSecretFileBytes) and must be regular files: a device, a
// named pipe or a huge file is refused at once, located at its field, and
// never read whole.
func TestTLSConfigFiles(t *testing.T) {
	s := spec.Spec{Name: "tls-test", Fields: []spec.Field{outbound.TLSField()}}
	dir := t.TempDir()
	writePair(t, dir)
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
		name, tls, want string
	}{
		{"valid pair and CA", "{enabled: true, ca_file: cert.pem, cert_file: cert.pem, key_file: key.pem}", ""},
		{"ca device", "{enabled: true, ca_file: /dev/zero}", "read /dev/zero: not a regular file (a character device)"},
		{"ca fifo", "{enabled: true, ca_file: fifo}", "not a regular file (a named pipe)"},
		{"ca too large", "{enabled: true, ca_file: big.pem}", "larger than the 1 MiB limit"},
		{"cert fifo", "{enabled: true, cert_file: fifo, key_file: key.pem}", "read " + fifo + ": not a regular file (a named pipe)"},
		{"key fifo", "{enabled: true, cert_file: cert.pem, key_file: fifo}", "read " + fifo + ": not a regular file (a named pipe)"},
		{"key device", "{enabled: true, cert_file: cert.pem, key_file: /dev/zero}", "read /dev/zero: not a regular file"},
		{"key too large", "{enabled: true, cert_file: cert.pem, key_file: big.pem}", "larger than the 1 MiB limit"},
		{"key of another file", "{enabled: true, cert_file: cert.pem, key_file: cert.pem}", "found a certificate rather than a key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := enginetest.Within(t, 10*time.Second, "TLSConfig", func() error {
				_, err := outbound.TLSConfig(parse(t, s, "tls: "+tt.tls), engine.BuildContext{Dir: dir, DryRun: true})
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
