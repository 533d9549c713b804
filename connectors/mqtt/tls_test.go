package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and
// returns the server's TLS config and the certificate's PEM path.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, path
}

// TestTLSAndCredentials runs a source over TLS with a user name and
// password, and checks that wrong settings are reported.
func TestTLSAndCredentials(t *testing.T) {
	serverTLS, ca := selfSigned(t)
	b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0", TLS: serverTLS, Username: "edge", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, version := range []string{"5", "3.1.1"} {
		t.Run("v"+version, func(t *testing.T) {
			sfx := suffix()
			cfg := seqSource(b.URL(), version, "src-"+sfx, "tls/"+sfx, fmt.Sprintf("username: edge\npassword: s3cret\ntls: {ca: %q}\n", ca))
			src := buildSource(t, cfg, engine.BuildContext{})
			c := newCollector()
			r := start(t, src, c)
			cl, err := newClient(clientConfig{ClientOptions: ClientOptions{URLs: []string{b.URL()}, ClientID: "pub-" + sfx,
				Username: "edge", Password: "s3cret", TLS: &tls.Config{InsecureSkipVerify: true}}})
			if err != nil {
				t.Fatal(err)
			}
			pub := &publisher{t: t, cl: cl}
			ctx := t.Context()
			if err := cl.start(ctx); err != nil {
				t.Fatal(err)
			}
			defer cl.stop(ctx)
			if err := cl.awaitConnection(ctx); err != nil {
				t.Fatal(err)
			}
			pub.publish("tls/"+sfx, seqPayload(7))
			if got := seqs(toAny(c.waitRows(t, 1)), 1); got[0] != 7 {
				t.Errorf("got %v", got)
			}
			r.stop(t)
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		failed := make(chan string, 16)
		log := slog.New(&funcHandler{f: func(r slog.Record) {
			if r.Message == "mqtt: connection attempt failed" {
				select {
				case failed <- r.Message:
				default:
				}
			}
		}})
		sfx := suffix()
		src := buildSource(t, seqSource(b.URL(), "5", "src-"+sfx, "t/"+sfx, fmt.Sprintf("username: edge\npassword: wrong\ntls: {ca: %q}\nreconnect_min: 10ms\n", ca)),
			engine.BuildContext{Log: log})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, newCollector().emit) }()
		for range 2 { // it keeps trying
			select {
			case <-failed:
			case err := <-done:
				t.Fatalf("the source stopped: %v", err)
			case <-time.After(waitFor):
				t.Fatal("no failed connection attempt reported")
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad settings", func(t *testing.T) {
		for _, tc := range []struct{ extra, want string }{
			{"tls: {ca: missing.pem}\n", "tls ca"},
			{"tls: {cert: c.pem}\n", "set both cert and key"},
		} {
			_, err := tryBuildSource(seqSource(b.URL(), "5", "x", "t", tc.extra), engine.BuildContext{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want %q", tc.extra, err, tc.want)
			}
		}
	})
}

// funcHandler hands every log record to f.
type funcHandler struct{ f func(slog.Record) }

func (h *funcHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h *funcHandler) Handle(_ context.Context, r slog.Record) error { h.f(r); return nil }
func (h *funcHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h *funcHandler) WithGroup(string) slog.Handler                 { return h }
