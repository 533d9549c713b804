package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluice-edge/sluice/engine"
)

// hostileBroker is a broker that speaks just enough MQTT to get the light
// client connected and subscribed, and then whatever a test makes it say.
// It listens on 127.0.0.1 and takes only the test's credentials.
type hostileBroker struct {
	ln    net.Listener
	conns chan net.Conn
}

const (
	hostileUser = "plant"
	hostilePass = "s3cret-hostile"
)

func newHostileBroker(t testing.TB) *hostileBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileBroker{ln: ln, conns: make(chan net.Conn, 64)}
	var (
		mu   sync.Mutex
		open []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			select {
			case h.conns <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			_ = c.Close()
		}
	})
	return h
}

func (h *hostileBroker) url() string { return "tcp://" + h.ln.Addr().String() }

// accept returns the next connection, or fails the test.
func (h *hostileBroker) accept(t testing.TB) net.Conn {
	t.Helper()
	select {
	case c := <-h.conns:
		return c
	case <-time.After(waitFor):
		t.Fatal("the client did not connect")
		return nil
	}
}

// readHostile reads one packet the client sent.
func readHostile(r *bufio.Reader, v byte) (*packets.Packet, error) {
	hb, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	pk := &packets.Packet{ProtocolVersion: v}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return nil, err
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(buf)
	case packets.Subscribe:
		err = pk.SubscribeDecode(buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	}
	return pk, err
}

// encode encodes pk with the codec.
func encode(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&b)
	case packets.Suback:
		err = pk.SubackEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&b)
	case packets.Pubrel:
		err = pk.PubrelEncode(&b)
	default:
		t.Fatalf("encode: packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func connackBytes(t testing.TB, v byte, code byte) []byte {
	return encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: v, ReasonCode: code})
}

func publishBytes(t testing.TB, v byte, topic string, qos byte, pid uint16, payload []byte) []byte {
	return encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: v,
		TopicName: topic, PacketID: pid, Payload: payload})
}

// hostileSession is one connection of the client to the hostile broker.
type hostileSession struct {
	conn net.Conn
	r    *bufio.Reader
	v    byte
	sub  *packets.Packet // the SUBSCRIBE received
}

// handshake takes the client's CONNECT (checking its credentials) and
// answers CONNACK; with subscribe, it also takes SUBSCRIBE and answers
// SUBACK granting everything.
func (h *hostileBroker) handshake(t testing.TB, v byte, subscribe bool) *hostileSession {
	t.Helper()
	c := h.accept(t)
	s := &hostileSession{conn: c, r: bufio.NewReader(c), v: v}
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	pk, err := readHostile(s.r, v)
	if err != nil || pk.FixedHeader.Type != packets.Connect {
		t.Fatalf("expected CONNECT: %v", err)
	}
	if string(pk.Connect.Username) != hostileUser || string(pk.Connect.Password) != hostilePass {
		_, _ = c.Write(connackBytes(t, v, packets.ErrBadUsernameOrPassword.Code))
		t.Fatal("the client sent other credentials")
	}
	s.write(t, connackBytes(t, v, 0))
	if subscribe {
		pk, err := readHostile(s.r, v)
		if err != nil || pk.FixedHeader.Type != packets.Subscribe {
			t.Fatalf("expected SUBSCRIBE: %v", err)
		}
		s.sub = pk
		codes := make([]byte, len(pk.Filters))
		for i, f := range pk.Filters {
			codes[i] = f.Qos
		}
		s.write(t, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: v,
			PacketID: pk.PacketID, ReasonCodes: codes}))
	}
	_ = c.SetReadDeadline(time.Time{})
	return s
}

func (s *hostileSession) write(t testing.TB, b []byte) {
	t.Helper()
	if _, err := s.conn.Write(b); err != nil {
		t.Fatalf("hostile broker: %v", err)
	}
}

// ended waits until the client closes the connection, reading (and
// dropping) whatever it sends until then.
func (s *hostileSession) ended(t testing.TB) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(waitFor))
	for {
		if _, err := readHostile(s.r, s.v); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the client kept the connection open")
			}
			return
		}
	}
}

// hostileCollector keeps the messages the client hands out.
type hostileCollector struct {
	mu   sync.Mutex
	msgs []message
	more chan struct{}
}

func (c *hostileCollector) onMessage(m message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *hostileCollector) got() []message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]message(nil), c.msgs...)
}

// waitN waits for n messages.
func (c *hostileCollector) waitN(t testing.TB, n int) []message {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		if got := c.got(); len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("received %d of %d messages", len(c.got()), n)
		}
	}
}

// hostileClient starts a light client on h; cfg adjusts its
// configuration.
func hostileClient(t testing.TB, h *hostileBroker, v int, cfg func(*clientConfig)) (*lightClient, *hostileCollector) {
	t.Helper()
	col := &hostileCollector{more: make(chan struct{}, 1)}
	cc := clientConfig{
		ClientOptions: ClientOptions{URLs: []string{h.url()}, ClientID: "hostile-" + suffix(), Version: v,
			Username: hostileUser, Password: hostilePass, ConnectTimeout: 5 * time.Second,
			ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, Log: testLogger(t)},
		subs:      []subscription{{topic: "h/#", qos: 1}},
		light:     true,
		manualAck: true,
		onMessage: col.onMessage,
	}
	if cfg != nil {
		cfg(&cc)
	}
	cl, err := newClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	lc := cl.(*lightClient)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = lc.stop(ctx)
	})
	return lc, col
}

// TestLightHostileHugeLength: a PUBLISH announcing the largest remaining
// length MQTT allows (268,435,455 bytes) costs no more than the payload
// the client keeps (max_payload+1 bytes and room for the topic), and a
// long one is read through, its payload kept up to maxPayload+1 bytes
// and the rest counted, so that the source refuses it as oversized; the
// next message arrives intact. Before, the client allocated the whole
// announced length at once, whatever max_payload said.
func TestLightHostileHugeLength(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			h := newHostileBroker(t)
			const maxPayload = 64 << 10
			_, col := hostileClient(t, h, int(v), func(c *clientConfig) { c.maxPayload = maxPayload })
			s := h.handshake(t, v, true)

			// The largest remaining length, then the connection ends
			// mid-packet.
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			s.write(t, []byte{0x30, 0xff, 0xff, 0xff, 0x7f, 0, 3, 'h', '/', 'x'})
			_ = s.conn.Close()
			s = h.handshake(t, v, true)
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Fatalf("a packet announcing 268,435,455 bytes made the client allocate %d MB", grew>>20)
			}

			// A long payload, then a short one.
			long := make([]byte, 8<<20)
			for i := range long {
				long[i] = byte(i * 7)
			}
			b := append(publishBytes(t, v, "h/long", 1, 1, long), publishBytes(t, v, "h/short", 1, 2, []byte("short"))...)
			runtime.ReadMemStats(&before)
			s.write(t, b)
			got := col.waitN(t, 2)
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
				t.Errorf("an 8 MB payload made the client allocate %d MB", grew>>20)
			}
			m := got[0]
			if m.topic != "h/long" || len(m.payload)+m.dropped != len(long) || len(m.payload) != maxPayload+1 ||
				!bytes.Equal(m.payload, long[:len(m.payload)]) {
				t.Fatalf("long message: topic %q, %d bytes kept, %d dropped", m.topic, len(m.payload), m.dropped)
			}
			if m := got[1]; m.topic != "h/short" || string(m.payload) != "short" || m.dropped != 0 {
				t.Fatalf("next message: %q %q", m.topic, m.payload)
			}
		})
	}
}

// TestLightHostilePackets: packets a broker must not send end the
// connection, and what came before them is all the client hands out:
// nothing malformed, nothing it could not acknowledge, no id that names
// two messages at once.
func TestLightHostilePackets(t *testing.T) {
	type step = func(t testing.TB, v byte) []byte
	raw := func(b ...byte) step { return func(testing.TB, byte) []byte { return b } }
	pub := func(topic string, qos byte, pid uint16) step {
		return func(t testing.TB, v byte) []byte { return publishBytes(t, v, topic, qos, pid, []byte("x")) }
	}
	withProps := func(p packets.Properties) step {
		return func(t testing.TB, v byte) []byte {
			return encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: v,
				TopicName: "h/p", PacketID: 9, Properties: p, Payload: []byte("x")})
		}
	}
	cases := []struct {
		name     string
		versions []byte
		receive  int // receive maximum, 0 for the default
		steps    []step
		want     int // messages handed out
	}{
		// A PINGRESP whose length 0 takes 6 bytes, then a message.
		{"length of 6 bytes", []byte{4, 5}, 0, []step{raw(0xd0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), pub("h/a", 0, 0)}, 0},
		{"length of 5 bytes", []byte{4, 5}, 0, []step{raw(0x30, 0x80, 0x80, 0x80, 0x80, 0x00)}, 0},
		{"QoS 1 with packet id 0", []byte{4}, 0, []step{raw(0x32, 6, 0, 1, 'h', 0, 0, 'x')}, 0},
		{"QoS 1 with packet id 0", []byte{5}, 0, []step{raw(0x32, 7, 0, 1, 'h', 0, 0, 0, 'x')}, 0},
		{"empty topic", []byte{4, 5}, 0, []step{pub("", 0, 0)}, 0},
		{"wildcard topic", []byte{4, 5}, 0, []step{pub("h/+/#", 0, 0)}, 0},
		{"NUL in topic", []byte{4, 5}, 0, []step{raw(0x30, 5, 0, 3, 'h', 0, 'a')}, 0},
		{"invalid UTF-8 topic", []byte{4, 5}, 0, []step{raw(0x30, 5, 0, 3, 'h', 0xff, 'a')}, 0},
		{"topic longer than the packet", []byte{4, 5}, 0, []step{raw(0x30, 3, 0, 9, 'h')}, 0},
		{"QoS 3", []byte{4, 5}, 0, []step{raw(0x36, 5, 0, 1, 'h', 0, 1)}, 0},
		{"QoS 2", []byte{4, 5}, 0, []step{pub("h/a", 2, 1)}, 0},
		{"same packet id twice in flight", []byte{4, 5}, 0, []step{pub("h/a", 1, 7), pub("h/b", 1, 7)}, 1},
		// 100,000 unacknowledged QoS 1 messages: the ids run out at
		// 65,535, and the next one reuses an id in flight.
		{"100k unacknowledged", []byte{4}, 0, []step{func(t testing.TB, v byte) []byte {
			var b []byte
			for i := range 100_000 {
				b = append(b, publishBytes(t, v, "h/a", 1, uint16(i%65535+1), nil)...)
			}
			return b
		}}, 65535},
		{"beyond the receive maximum", []byte{5}, 2, []step{pub("h/a", 1, 1), pub("h/b", 1, 2), pub("h/c", 1, 3)}, 2},
		{"topic alias", []byte{5}, 0, []step{withProps(packets.Properties{TopicAlias: 1, TopicAliasFlag: true})}, 0},
		{"property length beyond the packet", []byte{5}, 0, []step{raw(0x32, 7, 0, 1, 'h', 0, 1, 0x7f, 'x')}, 0},
		{"property length of 5 bytes", []byte{5}, 0, []step{raw(0x32, 11, 0, 1, 'h', 0, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 'x')}, 0},
		{"unknown property", []byte{5}, 0, []step{raw(0x32, 8, 0, 1, 'h', 0, 1, 2, 0x7e, 0, 'x')}, 0},
		// A property length of 1 ahead of a message expiry interval (4
		// bytes): the interval ran into the payload, which was then
		// handed out from the end of the section, its first bytes read
		// twice.
		{"property running into the payload", []byte{5}, 0, []step{raw(0x32, 12, 0, 1, 'h', 0, 1, 1, 0x02, 'a', 'b', 'c', 'd', 'x')}, 0},
		{"unexpected PUBREL", []byte{4, 5}, 0, []step{func(t testing.TB, v byte) []byte {
			return encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, ProtocolVersion: v, PacketID: 3})
		}}, 0},
		{"second CONNACK", []byte{4, 5}, 0, []step{func(t testing.TB, v byte) []byte { return connackBytes(t, v, 0) }}, 0},
		{"control packet of 1 MB", []byte{4, 5}, 0, []step{raw(0x90, 0x80, 0x80, 0x40)}, 0},
		{"DISCONNECT with a server reference", []byte{5}, 0, []step{func(t testing.TB, v byte) []byte {
			return encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: v,
				ReasonCode: packets.ErrServerMoved.Code, Properties: packets.Properties{ServerReference: "tcp://10.0.0.66:1883"}})
		}, pub("h/a", 0, 0)}, 0},
	}
	for _, tc := range cases {
		for _, v := range tc.versions {
			t.Run(fmt.Sprintf("%s/v%d", tc.name, v), func(t *testing.T) {
				h := newHostileBroker(t)
				_, col := hostileClient(t, h, int(v), func(c *clientConfig) { c.ReceiveMaximum = tc.receive })
				s := h.handshake(t, v, true)
				var b []byte
				for _, st := range tc.steps {
					b = append(b, st(t, v)...)
				}
				// One more message after the bad packet; it must not
				// arrive.
				b = append(b, publishBytes(t, v, "h/after", 0, 0, []byte("after"))...)
				_, _ = s.conn.Write(b) // the client may close before it has all
				s.ended(t)
				if got := col.got(); len(got) != tc.want {
					for _, m := range got {
						t.Logf("handed out: topic %q qos %d pid %d payload %q", m.topic, m.qos, m.pid, m.payload)
					}
					t.Fatalf("%d messages handed out, want %d", len(got), tc.want)
				}
			})
		}
	}
}

// TestLightHostileSlowBytes: a broker that writes every byte on its own
// (a packet split into many TCP segments, and packets straddling slabs)
// still yields every message byte for byte, while earlier messages are
// held by the receiver and more slabs are filled.
func TestLightHostileSlowBytes(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			h := newHostileBroker(t)
			_, col := hostileClient(t, h, int(v), nil)
			s := h.handshake(t, v, true)
			if tc, ok := s.conn.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			const n = 300
			payload := func(i int) []byte {
				size := 1 + i*613%(slabSize/3)
				if i%50 == 0 {
					size = slabSize + i
				}
				b := make([]byte, size)
				for j := range b {
					b[j] = byte(i + j*31)
				}
				return b
			}
			var all []byte
			for i := range n {
				all = append(all, publishBytes(t, v, fmt.Sprintf("h/%d", i), 1, uint16(i+1), payload(i))...)
			}
			// The first 4 KB one byte at a time, the rest in odd sizes.
			for i := 0; i < len(all); {
				k := 1
				if i > 4096 {
					k = 1 + i%4093
				}
				k = min(k, len(all)-i)
				s.write(t, all[i:i+k])
				i += k
			}
			got := col.waitN(t, n)
			for i, m := range got {
				if m.topic != fmt.Sprintf("h/%d", i) || !bytes.Equal(m.payload, payload(i)) || m.pid != uint16(i+1) {
					t.Fatalf("message %d: topic %q, %d bytes, pid %d", i, m.topic, len(m.payload), m.pid)
				}
			}
		})
	}
}

// TestLightHostileSubscribeUnanswered: a broker that leaves SUBSCRIBE
// unanswered, or answers with another packet id, no longer leaves the
// client connected, unsubscribed and never up: the connection ends after
// connect_timeout and the client subscribes again on the next one. A
// SUBACK with fewer reason codes than filters refuses the missing ones.
func TestLightHostileSubscribeUnanswered(t *testing.T) {
	for _, v := range []byte{4, 5} {
		for _, mode := range []string{"silent", "wrong id", "short"} {
			t.Run(fmt.Sprintf("%s/v%d", mode, v), func(t *testing.T) {
				h := newHostileBroker(t)
				refused := make(chan string, 4)
				cl, _ := hostileClient(t, h, int(v), func(c *clientConfig) {
					c.ConnectTimeout = 300 * time.Millisecond
					c.onSubscribeError = func(topic string, err error) { refused <- topic }
				})
				s := h.handshake(t, v, false)
				pk, err := readHostile(s.r, v)
				if err != nil || pk.FixedHeader.Type != packets.Subscribe {
					t.Fatalf("expected SUBSCRIBE: %v", err)
				}
				switch mode {
				case "wrong id":
					s.write(t, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: v,
						PacketID: pk.PacketID ^ 0x55, ReasonCodes: []byte{1}}))
				case "short":
					// Every SUBSCRIBE (MQTT 3.1.1 retries refusals) is
					// answered without reason codes.
					go func() {
						for pk := pk; pk != nil && pk.FixedHeader.Type == packets.Subscribe; pk, _ = readHostile(s.r, v) {
							if _, err := s.conn.Write(encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback},
								ProtocolVersion: v, PacketID: pk.PacketID, ReasonCodes: []byte{}})); err != nil {
								return
							}
						}
					}()
					select {
					case topic := <-refused:
						if topic != "h/#" {
							t.Fatalf("refused %q", topic)
						}
					case <-time.After(waitFor):
						t.Fatal("a SUBACK without reason codes was taken as granting the subscription")
					}
					ctx, cancel := context.WithTimeout(context.Background(), waitFor)
					defer cancel()
					if err := cl.awaitConnection(ctx); err != nil {
						t.Fatal(err)
					}
					return
				}
				s.ended(t)
				h.handshake(t, v, true)
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				if err := cl.awaitConnection(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestLightHostileSilentBroker: a broker that never answers PINGREQ (and
// sends nothing) loses the connection after about one and a half
// keep-alive intervals.
func TestLightHostileSilentBroker(t *testing.T) {
	h := newHostileBroker(t)
	hostileClient(t, h, 5, func(c *clientConfig) { c.KeepAlive = time.Second })
	s := h.handshake(t, 5, true)
	s.ended(t)
	h.handshake(t, 5, true) // and connects again
}

// TestLightHostileStopsReading: a broker that stops reading while it
// floods QoS 1 messages fills the socket with PUBACKs; the write holding
// the client is cut short by stop, which returns in well under
// connect_timeout (60s here).
func TestLightHostileStopsReading(t *testing.T) {
	h := newHostileBroker(t)
	var n atomic.Int64
	cl, _ := hostileClient(t, h, 4, func(c *clientConfig) {
		c.ConnectTimeout = time.Minute
		c.manualAck = false
		c.onMessage = func(message) { n.Add(1) }
	})
	s := h.handshake(t, 4, true)
	if tc, ok := s.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	stopFlood := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		var b []byte
		for i := range 4096 {
			b = append(b, publishBytes(t, 4, "h/f", 1, uint16(i+1), nil)...)
		}
		for off := 0; ; {
			select {
			case <-stopFlood:
				return
			default:
			}
			_ = s.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			k, err := s.conn.Write(b[off:])
			if off = (off + k) % len(b); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return
				}
			}
		}
	}()
	defer func() { close(stopFlood); <-flooded }()
	// Wait until the client stops taking messages in: its PUBACK write
	// is stuck.
	last, still := int64(-1), 0
	for still < 10 {
		time.Sleep(100 * time.Millisecond)
		if k := n.Load(); k == last {
			still++
		} else {
			last, still = k, 0
		}
	}
	t.Logf("the client took %d messages before its writes stuck", last)
	if cl.live.Load() == nil {
		t.Fatal("the connection ended instead")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	began := time.Now()
	if err := cl.stop(ctx); err != nil {
		t.Fatalf("stop: %v after %v", err, time.Since(began))
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("stop took %v", took)
	}
}

// TestLightHostileRefusals: a broker refusing every connection (CONNACK
// with a failure code), answering CONNECT with another packet, or
// breaking every connection at once is retried with backoff, never more
// often than reconnect_min allows.
func TestLightHostileRefusals(t *testing.T) {
	for _, answer := range []string{"refused", "publish", "closed", "QoS 2 after CONNACK"} {
		t.Run(answer, func(t *testing.T) {
			h := newHostileBroker(t)
			hostileClient(t, h, 5, func(c *clientConfig) {
				c.ReconnectMin, c.ReconnectMax = 200*time.Millisecond, 400*time.Millisecond
			})
			began := time.Now()
			const attempts = 5
			for range attempts {
				c := h.accept(t)
				r := bufio.NewReader(c)
				if _, err := readHostile(r, 5); err != nil {
					t.Fatal(err)
				}
				switch answer {
				case "refused":
					_, _ = c.Write(connackBytes(t, 5, packets.ErrNotAuthorized.Code))
				case "publish":
					_, _ = c.Write(publishBytes(t, 5, "h/early", 0, 0, []byte("before CONNACK")))
				case "QoS 2 after CONNACK":
					// Up, then broken at once: a short connection counts
					// as a failed attempt.
					_, _ = c.Write(append(connackBytes(t, 5, 0), publishBytes(t, 5, "h/q2", 2, 1, []byte("x"))...))
					_, _ = io.Copy(io.Discard, r)
				}
				_ = c.Close()
			}
			if took := time.Since(began); took < (attempts-1)*160*time.Millisecond {
				t.Fatalf("%d connections in %v: the backoff was not kept", attempts, took)
			}
		})
	}
}

// TestSourceHostileLongPayload: through the source, a PUBLISH far longer
// than max_payload is refused as oversized (counted and acknowledged)
// without being held in memory, and the next message of the connection
// becomes a row.
func TestSourceHostileLongPayload(t *testing.T) {
	h := newHostileBroker(t)
	cfg := fmt.Sprintf(`
urls: [%s]
client_id: src-%s
username: %s
password: %s
max_payload: 1024
format: json
topics: ["h/+"]
topic_pattern: "h/{deviceKey}"
schema: {time: ts, key: device, fields: {temp: float64}}
`, h.url(), suffix(), hostileUser, hostilePass)
	counters := engine.NewCounters()
	src := buildSource(t, cfg, engine.BuildContext{Counters: counters, Mem: checkedMem(t)})
	c := newCollector()
	sess := make(chan *hostileSession, 1)
	go func() { sess <- h.handshake(t, 5, true) }() // start returns once subscribed
	r := start(t, src, c)
	defer r.stop(t)
	s := <-sess
	long := append([]byte(`{"ts":1700000000000,"temp":1,"pad":"`), bytes.Repeat([]byte{'x'}, 4<<20)...)
	long = append(long, `"}`...)
	b := append(publishBytes(t, 5, "h/D1", 1, 1, long), publishBytes(t, 5, "h/D2", 1, 2, []byte(`{"ts":1700000000000,"temp":2.5}`))...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s.write(t, b)
	rows := c.waitRows(t, 1)
	runtime.ReadMemStats(&after)
	if rows[0][1] != "D2" {
		t.Fatalf("rows %v", rows)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 2<<20 {
		t.Errorf("a 4 MB payload made the source allocate %d MB", grew>>20)
	}
	waitCounter(t, counters, "oversized", 1)
	waitCounter(t, counters, "acked", 2)
	_ = s.conn.SetReadDeadline(time.Now().Add(waitFor))
	for acked := map[uint16]bool{}; len(acked) < 2; {
		pk, err := readHostile(s.r, 5)
		if err != nil {
			t.Fatalf("PUBACKs %v: %v", acked, err)
		}
		if pk.FixedHeader.Type == packets.Puback {
			acked[pk.PacketID] = true
		}
	}
	_ = s.conn.Close() // stop then has no round trip to wait for
}

// TestSourceProtocolErrorCounted: through the source, a packet from the
// broker that breaks MQTT 5 (a property running into the payload) ends
// the connection, is counted (protocol_errors) and logged at WARN, hands
// nothing out, and the source connects again; the next message becomes
// a row.
func TestSourceProtocolErrorCounted(t *testing.T) {
	h := newHostileBroker(t)
	cfg := fmt.Sprintf(`
urls: [%s]
client_id: src-%s
username: %s
password: %s
reconnect_min: 50ms
format: json
topics: ["h/+"]
topic_pattern: "h/{deviceKey}"
schema: {time: ts, key: device, fields: {temp: float64}}
`, h.url(), suffix(), hostileUser, hostilePass)
	counters := engine.NewCounters()
	src := buildSource(t, cfg, engine.BuildContext{Counters: counters, Mem: checkedMem(t)})
	c := newCollector()
	sess := make(chan *hostileSession, 1)
	go func() { sess <- h.handshake(t, 5, true) }() // start returns once subscribed
	r := start(t, src, c)
	defer r.stop(t)
	s := <-sess
	body := []byte(`{"ts":1700000000000,"temp":1}`)
	bad := append([]byte{0x32, byte(10 + len(body)), 0, 4, 'h', '/', 'D', '1', 0, 1, 1, 0x02}, body...)
	s.write(t, bad)
	s.ended(t)
	waitCounter(t, counters, "protocol_errors", 1)
	s = h.handshake(t, 5, true)
	s.write(t, publishBytes(t, 5, "h/D2", 1, 1, []byte(`{"ts":1700000000000,"temp":2.5}`)))
	rows := c.waitRows(t, 1)
	if len(rows) != 1 || rows[0][1] != "D2" {
		t.Fatalf("rows %v", rows)
	}
	if n := counters.Counter("messages").Load(); n != 1 {
		t.Fatalf("%d messages handed to the source, want 1", n)
	}
	_ = s.conn.Close()
}
