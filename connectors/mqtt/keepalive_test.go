package mqtt

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// keepAliveBroker takes one connection of a client on h: it reads CONNECT,
// answers an MQTT 5 CONNACK whose Server Keep Alive is ska seconds and,
// with subscribe, grants the SUBSCRIBE that follows.
func keepAliveBroker(t *testing.T, h *hostileBroker, ska uint16, subscribe bool) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := h.accept(t)
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if pk, err := readHostile(r, 5); err != nil || pk.FixedHeader.Type != packets.Connect {
		t.Fatalf("expected CONNECT: %v", err)
	}
	ack := encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: 5,
		Properties: packets.Properties{ServerKeepAlive: ska, ServerKeepAliveFlag: true}})
	if _, err := c.Write(ack); err != nil {
		t.Fatal(err)
	}
	if subscribe {
		pk, err := readHostile(r, 5)
		if err != nil || pk.FixedHeader.Type != packets.Subscribe {
			t.Fatalf("expected SUBSCRIBE: %v", err)
		}
		codes := make([]byte, len(pk.Filters))
		if _, err := c.Write(encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: 5,
			PacketID: pk.PacketID, ReasonCodes: codes})); err != nil {
			t.Fatal(err)
		}
	}
	return c, r
}

// keepAliveClient starts the source's light client (light) or the MQTT 5
// client of the sink and the downlink on h, with keep_alive ka.
func keepAliveClient(t *testing.T, h *hostileBroker, light bool, ka time.Duration) {
	t.Helper()
	if light {
		hostileClient(t, h, 5, func(c *clientConfig) { c.KeepAlive = ka })
		return
	}
	hostileClient5(t, h, "ka-", func(c *clientConfig) { c.KeepAlive = ka })
}

// hostileClient5 starts the MQTT 5 client of the sink and the downlink
// (client ids starting with prefix) on h, with mod applied to its
// configuration, and stops it when the test ends.
func hostileClient5(t *testing.T, h *hostileBroker, prefix string, mod func(*clientConfig)) client {
	t.Helper()
	cfg := clientConfig{ClientOptions: ClientOptions{URLs: []string{h.url()}, ClientID: prefix + suffix(), Version: 5,
		Username: hostileUser, Password: hostilePass, ConnectTimeout: 5 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, Log: testLogger(t)}}
	if mod != nil {
		mod(&cfg)
	}
	cl, err := newClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = cl.stop(ctx)
	})
	return cl
}

// TestKeepAliveServerLonger: an MQTT 5 broker may set a Server Keep Alive
// of up to 65,535 s (about 18 hours) in its CONNACK. The clients took it
// as their interval, pinged that rarely and noticed a dead link (a broker
// gone without a FIN: nothing arrives any more) only after a day, while
// the data stopped silently. They now keep the shorter of keep_alive and
// the broker's value: a broker that falls silent loses the connection
// within two keep_alive intervals.
func TestKeepAliveServerLonger(t *testing.T) {
	for _, light := range []bool{true, false} {
		t.Run(map[bool]string{true: "light", false: "client5"}[light], func(t *testing.T) {
			h := newHostileBroker(t)
			const ka = time.Second
			keepAliveClient(t, h, light, ka)
			c, r := keepAliveBroker(t, h, 65535, light)
			// From now on the broker reads what the client sends and
			// answers nothing, as a link whose far end is gone.
			silent := time.Now()
			const bound = 2*ka + time.Second
			_ = c.SetReadDeadline(silent.Add(bound + 2*time.Second))
			for {
				if _, err := readHostile(r, 5); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("the connection stayed up %v after the broker fell silent (keep_alive %v, broker's 65535s)",
							time.Since(silent).Round(time.Millisecond), ka)
					}
					break
				}
			}
			took := time.Since(silent)
			t.Logf("dead link detected after %v (keep_alive %v, broker's 65535s)", took.Round(time.Millisecond), ka)
			if took > bound {
				t.Fatalf("dead link detected after %v, more than %v", took, bound)
			}
		})
	}
}

// TestKeepAliveServerShorter: a broker's Server Keep Alive shorter than
// keep_alive is the interval the client keeps (MQTT 5 §3.2.2.3.14: the
// client must use it): a PINGREQ comes within it.
func TestKeepAliveServerShorter(t *testing.T) {
	for _, light := range []bool{true, false} {
		t.Run(map[bool]string{true: "light", false: "client5"}[light], func(t *testing.T) {
			h := newHostileBroker(t)
			keepAliveClient(t, h, light, time.Minute)
			c, r := keepAliveBroker(t, h, 1, light)
			began := time.Now()
			_ = c.SetReadDeadline(began.Add(waitFor))
			for {
				pk, err := readHostile(r, 5)
				if err != nil {
					t.Fatalf("no PINGREQ: %v", err)
				}
				if pk.FixedHeader.Type == packets.Pingreq {
					break
				}
			}
			if took := time.Since(began); took > 1500*time.Millisecond {
				t.Fatalf("first PINGREQ after %v; the broker's keep-alive is 1s", took)
			}
		})
	}
}
