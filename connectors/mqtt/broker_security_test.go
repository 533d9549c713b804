package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// startTestBroker starts a broker on a free port, logging at DEBUG into
// the returned buffer.
func startTestBroker(t testing.TB, opts BrokerOptions) (*Broker, *enginetest.LogBuffer) {
	t.Helper()
	logs := &enginetest.LogBuffer{}
	opts.Listen = "127.0.0.1:0"
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := StartBroker(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, logs
}

// hash returns a bcrypt hash of password at the cheapest cost.
func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// testClient is a plain MQTT 3.1.1 client of the tests.
type testClient struct {
	t    testing.TB
	c    mqtt3.Client
	msgs chan mqtt3.Message
	lost chan error
}

// dial3 connects an MQTT 3.1.1 client; it returns the CONNECT error.
func dial3(t testing.TB, url, id, user, password string, will ...string) (*testClient, error) {
	t.Helper()
	return dial3From(t, url, "", id, user, password, will...)
}

// dial3From is dial3 from a local address (127.0.0.0/8 holds many), or
// from any when from is empty.
func dial3From(t testing.TB, url, from, id, user, password string, will ...string) (*testClient, error) {
	t.Helper()
	c := &testClient{t: t, msgs: make(chan mqtt3.Message, 256), lost: make(chan error, 1)}
	o := mqtt3.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetClientID(id).SetUsername(user).SetPassword(password).
		SetAutoReconnect(false).SetCleanSession(true).SetConnectRetry(false).SetConnectTimeout(waitFor).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			select {
			case c.msgs <- m:
			default:
			}
		})
	if len(will) == 1 {
		o.SetWill(will[0], "gone", 0, false)
	}
	if from != "" {
		o.SetDialer(&net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}})
	}
	c.c = mqtt3.NewClient(o)
	tok := c.c.Connect()
	if !tok.WaitTimeout(waitFor) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.c.Disconnect(0) })
	return c, nil
}

func mustDial3(t testing.TB, url, id, user, password string) *testClient {
	t.Helper()
	c, err := dial3(t, url, id, user, password)
	if err != nil {
		t.Fatalf("%s connecting: %v", id, err)
	}
	return c
}

// subscribe returns the SUBACK code of one filter (0x80: refused).
func (c *testClient) subscribe(filter string) byte {
	c.t.Helper()
	tok := c.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		c.t.Fatalf("subscribing to %s: %v", filter, tok.Error())
	}
	return tok.(*mqtt3.SubscribeToken).Result()[filter]
}

// publish publishes at QoS 0 (a refused QoS 0 publication is dropped
// silently; QoS 1 would cost the 3.1.1 connection).
func (c *testClient) publish(topic, payload string) {
	c.t.Helper()
	if tok := c.c.Publish(topic, 0, false, payload); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		c.t.Fatalf("publishing to %s: %v", topic, tok.Error())
	}
}

// next returns the next message, or fails.
func (c *testClient) next() mqtt3.Message {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitFor):
		c.t.Fatal("timed out waiting for a message")
	}
	return nil
}

// expectOnly checks that the next message is on topic.
func (c *testClient) expectOnly(topic string) {
	c.t.Helper()
	if m := c.next(); m.Topic() != topic {
		c.t.Fatalf("received %s, want only %s", m.Topic(), topic)
	}
}

// pollUntil waits until cond holds.
func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBrokerAuthentication admits exactly the clients whose credentials
// match a user: bcrypt hashes, clear passwords (from the environment),
// and anonymous clients only with AllowAnonymous.
func TestBrokerAuthentication(t *testing.T) {
	users := []BrokerUser{
		{Username: "hashed", PasswordHash: hash(t, "pw-hashed"), ProductKey: "p", DeviceKey: "d1"},
		{Username: "clear", Password: "pw-clear", ProductKey: "p", DeviceKey: "d2"},
	}
	for _, tc := range []struct {
		name       string
		anonymous  bool
		user, pass string
		ok         bool
	}{
		{"hash", false, "hashed", "pw-hashed", true},
		{"hash wrong", false, "hashed", "pw-clear", false},
		{"clear", false, "clear", "pw-clear", true},
		{"clear wrong", false, "clear", "pw-clear2", false},
		{"unknown user", false, "nobody", "pw-hashed", false},
		{"anonymous refused", false, "", "", false},
		{"anonymous allowed", true, "", "", true},
		{"anonymous allowed, bad password still refused", true, "hashed", "x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := startTestBroker(t, BrokerOptions{Users: users, AllowAnonymous: tc.anonymous})
			_, err := dial3(t, b.URL(), "c-"+suffix(), tc.user, tc.pass)
			if (err == nil) != tc.ok {
				t.Fatalf("connect error %v, want success %v", err, tc.ok)
			}
			if want := int64(0); !tc.ok {
				if got := b.Stats().AuthRefused; got != 1 {
					t.Errorf("AuthRefused = %d, want 1", got)
				}
			} else if got := b.Stats().AuthRefused; got != want {
				t.Errorf("AuthRefused = %d, want 0", got)
			}
		})
	}
}

// TestOpenBrokerOnlyOnLoopback: a broker without users is open, which
// StartBroker allows on loopback only, unless asked explicitly.
func TestOpenBrokerOnlyOnLoopback(t *testing.T) {
	if _, err := StartBroker(BrokerOptions{Listen: "0.0.0.0:0"}); err == nil {
		t.Fatal("an open broker on 0.0.0.0 started")
	}
	b, err := StartBroker(BrokerOptions{Listen: "0.0.0.0:0", AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
}

// TestBrokerACL checks a device user's rights: its own uplink only, no
// downlink (commands, replies to posts), no other device's topics, no
// forged replies, subscriptions confined to its own topics; the engine
// may do everything.
func TestBrokerACL(t *testing.T) {
	b, _ := startTestBroker(t, BrokerOptions{Users: []BrokerUser{
		{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"},
		{Username: "tool", Password: "pwt", Publish: []string{"tools/%u/#", "/sys/#"}, Subscribe: []string{"tools/#"}},
		{Username: "engine", Password: "pwe", Engine: true},
	}})
	eng := mustDial3(t, b.URL(), "engine-"+suffix(), "engine", "pwe")
	if code := eng.subscribe("#"); code != 1 {
		t.Fatalf("engine SUBACK %#x", code)
	}
	dev := mustDial3(t, b.URL(), "T1-"+suffix(), "T1", "pw1")
	tool := mustDial3(t, b.URL(), "tool-"+suffix(), "tool", "pwt")

	const own = "/sys/turbine/T1/thing/"
	marker := own + "measurepoint/post"
	for _, tc := range []struct {
		who   *testClient
		topic string
		ok    bool
	}{
		{dev, own + "measurepoint/post", true},
		{dev, own + "measurepoint/resume/batch", false}, // a batch names any device: needs a grant
		{dev, own + "service/measurepoint/set_reply", true},
		{dev, own + "event/alarm/post", true},
		{dev, own + "service/measurepoint/set", false},                       // a command
		{dev, own + "measurepoint/post_reply", false},                        // the engine's reply to a post
		{dev, "/sys/turbine/T2/thing/measurepoint/post", false},              // another device
		{dev, "/sys/turbine/T2/thing/service/measurepoint/set_reply", false}, // a forged reply
		{dev, "/sys/other/T1/thing/measurepoint/post", false},
		{dev, "elsewhere", false},
		{tool, "tools/tool/x", true},
		{tool, "tools/other/x", false},
		{tool, "/sys/turbine/T2/thing/measurepoint/post", true},
		{tool, "/sys/turbine/T2/thing/service/measurepoint/set", false}, // downlink stays the engine's
		{tool, "/sys/turbine/T2/thing/measurepoint/post_reply", false},
	} {
		before := b.Stats().ACLRefused
		tc.who.publish(tc.topic, "x")
		tc.who.publish(marker, "marker") // the tool may publish it too
		if tc.ok {
			eng.expectOnly(tc.topic)
		}
		// The broker handles a connection's packets in order: the marker
		// arrives after the first publication was delivered or refused.
		eng.expectOnly(marker)
		if refused := b.Stats().ACLRefused - before; refused != 0 == tc.ok {
			t.Errorf("publishing to %s: %d refusals, want allowed %v", tc.topic, refused, tc.ok)
		}
	}

	for _, tc := range []struct {
		who    *testClient
		filter string
		ok     bool
	}{
		{dev, own + "service/#", true},
		{dev, "/sys/turbine/T1/#", true},
		{dev, "$share/g/" + own + "service/+", true},
		{dev, own + "service/measurepoint/set", true},
		{dev, own + "measurepoint/post_reply", true},
		{dev, own + "measurepoint/post", false}, // its own uplink
		{dev, "/sys/turbine/+/thing/service/#", false},
		{dev, "/sys/+/T1/#", false},
		{dev, "#", false},
		{dev, "$SYS/#", false},
		{dev, "$share/g/#", false},
		{tool, "tools/a/b", true},
		{tool, "tools/#", true},
		{tool, "#", false},
		{tool, "/sys/#", false},
	} {
		before := b.Stats().ACLRefused
		code := tc.who.subscribe(tc.filter)
		refused := b.Stats().ACLRefused - before
		// paho reports no SUBACK code for $share filters; refusing a
		// device its own uplink is not counted.
		share, ownUplink := strings.HasPrefix(tc.filter, "$share/"), tc.filter == own+"measurepoint/post"
		if (code != 0x80) != tc.ok && !share || (refused == 0) != tc.ok && !ownUplink {
			t.Errorf("subscribing to %s: SUBACK %#x, %d refusals, want allowed %v", tc.filter, code, refused, tc.ok)
		}
	}

	// The device receives its commands, not another device's nor its own
	// uplink (it subscribed to /sys/turbine/T1/#).
	eng.publish("/sys/turbine/T2/thing/service/measurepoint/set", "theirs")
	eng.publish(own+"measurepoint/post", "uplink")
	eng.publish(own+"service/measurepoint/set", "mine")
	if m := dev.next(); m.Topic() != own+"service/measurepoint/set" {
		t.Errorf("the device received %s", m.Topic())
	}

	// A will on another device's topic is refused at CONNECT.
	if _, err := dial3(t, b.URL(), "T1w-"+suffix(), "T1", "pw1", "/sys/turbine/T2/thing/service/x_reply"); err == nil {
		t.Error("a will on another device's topic was accepted")
	}
}

// TestBrokerTakeover: a client id held by one user's session cannot be
// taken by another user; the same user may take it over.
func TestBrokerTakeover(t *testing.T) {
	b, logs := startTestBroker(t, BrokerOptions{Users: []BrokerUser{
		{Username: "engine", Password: "pwe", Engine: true},
		{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"},
	}})
	const id = "sluice-site-pipeline-devices"
	eng := mustDial3(t, b.URL(), id, "engine", "pwe")
	for range 10 {
		if _, err := dial3(t, b.URL(), id, "T1", "pw1"); err == nil {
			t.Fatal("a device took over the engine's client id")
		}
	}
	if !eng.c.IsConnectionOpen() {
		t.Fatal("the engine was disconnected")
	}
	select {
	case err := <-eng.lost:
		t.Fatalf("the engine lost its connection: %v", err)
	default:
	}
	if got := b.Stats().TakeoversRefused; got != 10 {
		t.Errorf("TakeoversRefused = %d, want 10", got)
	}
	if n := strings.Count(logs.String(), "another user"); n > eventBurst {
		t.Errorf("%d log lines for 10 refusals, want at most %d", n, eventBurst)
	}
	// The same user takes over.
	mustDial3(t, b.URL(), id, "engine", "pwe")
	select {
	case <-eng.lost:
	case <-time.After(waitFor):
		t.Error("the same user did not take the session over")
	}
}

// rawConnect returns the bytes of an MQTT 3.1.1 CONNECT.
func rawConnect(id, user, password string, keepAlive uint16) []byte {
	str := func(s string) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(s))) }
	var body []byte
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 4)
	flags := byte(0x02)
	if user != "" {
		flags |= 0x80
	}
	if password != "" {
		flags |= 0x40
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	for _, s := range []string{id, user, password} {
		if s != "" || s == id {
			body = append(append(body, str(s)...), s...)
		}
	}
	return append(append([]byte{0x10}, remaining(len(body))...), body...)
}

// remaining encodes an MQTT remaining length.
func remaining(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// rawDial opens a TCP connection to the broker.
func rawDial(t testing.TB, b *Broker) net.Conn {
	t.Helper()
	return rawDialFrom(t, b, "")
}

// rawDialFrom opens a TCP connection to the broker from a local address,
// or from any when from is empty.
func rawDialFrom(t testing.TB, b *Broker, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: waitFor}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedByBroker waits until the broker closes c.
func closedByBroker(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the broker did not close the connection")
	}
}

// TestBrokerOversizedPacket sends the header of a 200 MB PUBLISH and
// then its body: the broker must close the connection on the header,
// without reading or allocating the body.
func TestBrokerOversizedPacket(t *testing.T) {
	b, _ := startTestBroker(t, BrokerOptions{})
	c := rawDial(t, b)
	if _, err := c.Write(rawConnect("big-"+suffix(), "", "", 30)); err != nil {
		t.Fatal(err)
	}
	const size = 200 << 20
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	hdr := append([]byte{0x30}, remaining(size)...)
	_, _ = c.Write(hdr)
	chunk := make([]byte, 1<<20)
	sent := 0
	_ = c.SetWriteDeadline(time.Now().Add(waitFor))
	for sent < size {
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	closedByBroker(t, c)
	close(stop)
	<-sampled
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(peak.Load()) - int64(before.HeapAlloc)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("sent %d MB of %d; heap peak growth %.1f MB; allocated %.1f MB", sent>>20, size>>20, float64(growth)/(1<<20), float64(allocated)/(1<<20))
	if growth > 100<<20 || allocated > 100<<20 {
		t.Errorf("heap grew by %d bytes, %d allocated, for one oversized packet", growth, allocated)
	}
	pollUntil(t, "the oversized packet is counted", func() bool { return b.Stats().Oversized == 1 })
}

// TestBrokerConnectTimeout closes connections that never send CONNECT,
// and connections silent beyond the granted keep-alive.
func TestBrokerConnectTimeout(t *testing.T) {
	b, logs := startTestBroker(t, BrokerOptions{Limits: BrokerLimits{ConnectTimeout: 100 * time.Millisecond, MaxKeepAlive: time.Second}})
	const idle = 30
	conns := make([]net.Conn, idle)
	for i := range conns {
		conns[i] = rawDial(t, b)
	}
	for _, c := range conns {
		closedByBroker(t, c)
	}
	// Keep-alive 0 (none) is replaced by MaxKeepAlive.
	c := rawDial(t, b)
	if _, err := c.Write(rawConnect("silent-"+suffix(), "", "", 0)); err != nil {
		t.Fatal(err)
	}
	closedByBroker(t, c)
	pollUntil(t, "the timeouts are counted", func() bool { return b.Stats().ConnectTimeouts == idle+1 })
	if n := strings.Count(logs.String(), "silent connection"); n > eventBurst {
		t.Errorf("%d log lines for %d idle connections, want at most %d", n, idle+1, eventBurst)
	}
}

// TestBrokerMaxConnections refuses clients beyond the limit at CONNECT,
// with "server unavailable".
func TestBrokerMaxConnections(t *testing.T) {
	b, logs := startTestBroker(t, BrokerOptions{Limits: BrokerLimits{MaxConnections: 3}})
	for range 3 {
		mustDial3(t, b.URL(), "c-"+suffix(), "", "")
	}
	const extra = 40
	for range extra {
		_, err := dial3(t, b.URL(), "c-"+suffix(), "", "")
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
			t.Fatalf("connect error %v, want server unavailable", err)
		}
	}
	if got := b.Stats().ConnectionsRefused; got != extra {
		t.Errorf("ConnectionsRefused = %d, want %d", got, extra)
	}
	if n := strings.Count(logs.String(), "max_connections reached"); n > eventBurst {
		t.Errorf("%d log lines for %d refused connections, want at most %d", n, extra, eventBurst)
	}
	if got := b.Stats().Connections; got != 3 {
		t.Errorf("Connections = %d, want 3", got)
	}
}

// TestBrokerRetainedLimits stops retaining beyond the byte limit: the
// messages are delivered, not kept.
func TestBrokerRetainedLimits(t *testing.T) {
	const limit = 1 << 20
	b, _ := startTestBroker(t, BrokerOptions{Limits: BrokerLimits{MaxRetainedBytes: limit, MaxRetained: 100}})
	pub := mustDial3(t, b.URL(), "ret-"+suffix(), "", "")
	payload := strings.Repeat("x", 64<<10)
	const n = 200
	for i := range n {
		if tok := pub.c.Publish(fmt.Sprintf("ret/%d", i), 1, true, payload); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	s := b.Stats()
	if s.RetainedBytes > limit || s.Retained > 16 {
		t.Errorf("retained %d messages, %d bytes; limit %d bytes", s.Retained, s.RetainedBytes, limit)
	}
	if s.RetainedRefused != n-s.Retained {
		t.Errorf("RetainedRefused = %d, want %d", s.RetainedRefused, n-s.Retained)
	}
	sub := mustDial3(t, b.URL(), "late-"+suffix(), "", "")
	sub.subscribe("ret/#")
	for got := int64(0); got < s.Retained; {
		m := sub.next()
		if !m.Retained() {
			if strings.HasPrefix(m.Topic(), "ret/") && m.Topic() != "ret/marker" {
				// Published (and acknowledged) just before the
				// subscription, still being routed: delivered live.
				continue
			}
			t.Fatalf("%s is not retained", m.Topic())
		}
		got++
	}
	pub.publish("ret/marker", "m")
	sub.expectOnly("ret/marker")
	// Deleting a retained message frees its room.
	pub.c.Publish("ret/0", 1, true, "").WaitTimeout(waitFor)
	pollUntil(t, "the deletion is accounted", func() bool { return b.Stats().Retained == s.Retained-1 })
}

// TestBrokerLogHasNoPassword scans everything the broker logs, at DEBUG,
// around refused and accepted logins and a second CONNECT (which the
// broker library logs with the packet), for the password.
func TestBrokerLogHasNoPassword(t *testing.T) {
	const secret = "Sup3r-s3cret-passw0rd"
	b, logs := startTestBroker(t, BrokerOptions{Users: []BrokerUser{{Username: "u", Password: secret, ProductKey: "p", DeviceKey: "d"}}})
	// From another address: the failure makes its address back off.
	if _, err := dial3From(t, b.URL(), "127.0.0.2", "bad-"+suffix(), "u", secret+"-wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	mustDial3(t, b.URL(), "good-"+suffix(), "u", secret)
	c := rawDial(t, b)
	connect := rawConnect("twice-"+suffix(), "u", secret, 30)
	if _, err := c.Write(append(append([]byte{}, connect...), connect...)); err != nil {
		t.Fatal(err)
	}
	closedByBroker(t, c)
	_ = b.Close()
	out := logs.String()
	if out == "" {
		t.Fatal("the broker logged nothing")
	}
	// Also as the bytes fmt prints for a []byte, and in hex.
	forms := []string{secret, strings.Trim(fmt.Sprint([]byte(secret)), "[]"), fmt.Sprintf("%x", secret)}
	if slices.ContainsFunc(forms, func(f string) bool { return strings.Contains(out, f) }) {
		t.Fatalf("the password is in the log:\n%s", out)
	}
}

// TestEmbeddedBrokerFromYAML starts the embedded broker through a
// source's broker field: anonymous clients are refused, a device user
// posts, and the source (connecting with the process's own identity)
// receives it.
func TestEmbeddedBrokerFromYAML(t *testing.T) {
	t.Setenv("SLUICE_TEST_T1_PASSWORD", "pw-T1")
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`
format: json
topics: ["/sys/+/+/thing/measurepoint/post"]
topic_fields: {deviceKey: 3}
clean_session: true
schema: {time: ts, key: asset, fields: {v: int64}}
mapping: {v: v}
broker:
  embedded: true
  listen: %q
  users:
    - {username: T1, password_env: SLUICE_TEST_T1_PASSWORD, product_key: turbine}
`, addr)
	src := buildSource(t, cfg, engine.BuildContext{Log: testLogger(t)})
	if src.opts.Username != engineUser {
		t.Fatalf("the source connects as %q", src.opts.Username)
	}
	c := newCollector()
	start(t, src, c)
	url := "tcp://" + addr
	if _, err := dial3(t, url, "anon-"+suffix(), "", ""); err == nil {
		t.Fatal("an anonymous client connected")
	}
	// From another address: the failure makes its address back off.
	if _, err := dial3From(t, url, "127.0.0.2", "guess-"+suffix(), engineUser, "guess"); err == nil {
		t.Fatal("a client connected as the engine")
	}
	dev := mustDial3(t, url, "T1-"+suffix(), "T1", "pw-T1")
	dev.publish("/sys/turbine/T2/thing/measurepoint/post", `{"ts":1700000000000,"v":2}`) // not its own: refused
	dev.publish("/sys/turbine/T1/thing/measurepoint/post", `{"ts":1700000000000,"v":1}`)
	for len(c.snapshot()) == 0 {
		select {
		case <-c.changed:
		case <-time.After(waitFor):
			t.Fatal("the source received nothing")
		}
	}
	rows := c.snapshot()
	if len(rows) != 1 || !strings.Contains(fmt.Sprint(rows[0]), "T1") {
		t.Fatalf("rows %v", rows)
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// BenchmarkBrokerACL measures the check of one publication and one
// delivery of a device.
func BenchmarkBrokerACL(b *testing.B) {
	a := access{productKey: "turbine", deviceKey: "T0001"}
	up, down := "/sys/turbine/T0001/thing/measurepoint/post", "/sys/turbine/T0001/thing/service/measurepoint/set"
	b.ReportAllocs()
	for b.Loop() {
		if !a.canPublish(up) || a.canPublish(down) || !a.canSubscribe(down) {
			b.Fatal("wrong decision")
		}
	}
}

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t testing.TB, dir, name string) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestBrokerTLSConfig checks the files of the broker's tls field.
func TestBrokerTLSConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := writeCert(t, dir, "a")
	_, otherKey, _ := writeCert(t, dir, "b")
	for _, tc := range []struct {
		name, cert, key, ca, err string
	}{
		{"ok", cert, key, "", ""},
		{"ok with client ca", cert, key, cert, ""},
		{"no key", cert, "", "", "required"},
		{"missing file", filepath.Join(dir, "none.pem"), key, "", "no such file"},
		{"key of another certificate", cert, otherKey, "", "does not match"},
		{"ca not PEM", cert, key, key, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := brokerTLS(tc.cert, tc.key, tc.ca)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestEmbeddedBrokerMutualTLS: over TLS with a client CA, a device must
// present a certificate as well as its password; the source, connecting
// with the process's identity, needs neither a certificate nor a CA (it
// checks the broker's own certificate).
func TestEmbeddedBrokerMutualTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, pair := writeCert(t, dir, "broker")
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`
format: json
topics: ["/sys/+/+/thing/measurepoint/post"]
topic_fields: {deviceKey: 3}
clean_session: true
schema: {time: ts, key: asset, fields: {v: int64}}
broker:
  embedded: true
  listen: %q
  users: [{username: T1, password_hash: %q, product_key: turbine}]
  tls: {cert_file: %q, key_file: %q, client_ca_file: %q}
`, addr, hash(t, "pw-T1"), cert, key, cert)
	src := buildSource(t, cfg, engine.BuildContext{})
	c := newCollector()
	start(t, src, c)
	url := "tls://" + addr
	dialTLS := func(certs []tls.Certificate) error {
		o := mqtt3.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetClientID("T1-" + suffix()).
			SetUsername("T1").SetPassword("pw-T1").SetAutoReconnect(false).SetConnectTimeout(waitFor).
			SetTLSConfig(&tls.Config{InsecureSkipVerify: true, Certificates: certs})
		cl := mqtt3.NewClient(o)
		tok := cl.Connect()
		tok.WaitTimeout(waitFor)
		if tok.Error() == nil {
			cl.Publish("/sys/turbine/T1/thing/measurepoint/post", 0, false, `{"ts":1700000000000,"v":1}`).WaitTimeout(waitFor)
			cl.Disconnect(0)
		}
		return tok.Error()
	}
	if err := dialTLS(nil); err == nil {
		t.Fatal("a device without a client certificate connected")
	}
	if err := dialTLS([]tls.Certificate{pair}); err != nil {
		t.Fatalf("a device with a client certificate: %v", err)
	}
	for len(c.snapshot()) == 0 {
		select {
		case <-c.changed:
		case <-time.After(waitFor):
			t.Fatal("the source received nothing")
		}
	}
}

// TestPasswordFile reads hashes for listed users and device users.
func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	h1, h2 := hash(t, "one"), hash(t, "two")
	for _, tc := range []struct {
		name, file, err string
	}{
		{"ok", "# devices\nlisted:" + h1 + "\nT2:" + h2 + ":turbine:T2\n", ""},
		{"unknown user", "stranger:" + h1 + "\n", "not in users"},
		{"clear password by mistake", "listed:hunter2:x\n", "want user:bcrypt-hash"},
		{"reserved", "$x:" + h1 + ":p:d\n", "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			opts := BrokerOptions{Users: []BrokerUser{{Username: "listed"}}}
			err := readPasswordFile(path, &opts, map[string]int{"listed": 0})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if err != nil {
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the line: %v", err)
				}
				return
			}
			if opts.Users[0].PasswordHash != h1 || len(opts.Users) != 2 || opts.Users[1].DeviceKey != "T2" {
				t.Errorf("users %+v", opts.Users)
			}
		})
	}
}

// TestTopicFilters checks the ACL's topic matching.
func TestTopicFilters(t *testing.T) {
	for _, tc := range []struct {
		f, topic      string
		match, covers bool
	}{
		{"a/#", "a", true, true},
		{"a/#", "a/b/c", true, true},
		{"a/+", "a/b", true, true},
		{"a/+", "a/b/c", false, false},
		{"a/+", "a/+", true, true},
		{"a/b", "a/+", false, false},
		{"a/+", "a/#", false, false},
		{"#", "$SYS/x", false, false},
		{"+/x", "$SYS/x", false, false},
		{"$SYS/#", "$SYS/x", true, true},
		{"/sys/+/+/thing/#", "/sys/p/d/thing/x", true, true},
		{"/sys/+/+/thing/#", "/sys/p/d/other", false, false},
	} {
		if got := topicMatches(tc.f, tc.topic); got != tc.match && !strings.ContainsAny(tc.topic, "+#") {
			t.Errorf("topicMatches(%q, %q) = %v", tc.f, tc.topic, got)
		}
		if got := filterCovers(tc.f, tc.topic); got != tc.covers {
			t.Errorf("filterCovers(%q, %q) = %v", tc.f, tc.topic, got)
		}
	}
	for topic, down := range map[string]bool{
		"/sys/p/d/thing/service/measurepoint/set":       true,
		"/sys/p/d/thing/service/measurepoint/set_reply": false,
		"/sys/p/d/thing/measurepoint/post":              false,
		"/sys/p/d/thing/measurepoint/post_reply":        true,
		"/sys/p/d/thing/measurepoint/post/batch_reply":  true,
		"other/thing/service/x":                         false,
	} {
		if isDownlink(topic) != down {
			t.Errorf("isDownlink(%q) = %v", topic, !down)
		}
	}
}
