package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestLightPropertySections: an MQTT 5 property whose value runs past the
// end of its property section (the section's length says fewer bytes than
// its properties take) makes the packet malformed, and the light client
// refuses it. The codec read such a property from the bytes after the
// section — the payload of a PUBLISH, the reason codes of a SUBACK — and
// then took those bytes again as what follows, so that a PUBLISH was
// handed out with a payload whose first bytes had also been read as a
// property. The same packets with a property length that fits decode.
func TestLightPropertySections(t *testing.T) {
	cases := []struct {
		name       string
		typ        byte   // fixed header byte
		head       []byte // what comes before the property length
		props      []byte // the properties
		tail       []byte // what comes after them
		understate int    // how many bytes the property length leaves out
	}{
		// Message expiry (4 bytes) with a property length of 1.
		{"PUBLISH message expiry", 0x32, []byte{0, 3, 'h', '/', 'p', 0, 1}, []byte{0x02, 0, 0, 0, 9}, []byte("payload"), 4},
		// A user property whose value runs into the payload.
		{"PUBLISH user property", 0x30, []byte{0, 3, 'h', '/', 'p'}, []byte{0x26, 0, 1, 'k', 0, 2, 'v', 'v'}, []byte("payload"), 3},
		{"PUBLISH content type", 0x32, []byte{0, 3, 'h', '/', 'p', 0, 1}, []byte{0x03, 0, 4, 'j', 's', 'o', 'n'}, []byte("payload"), 1},
		{"PUBLISH subscription identifier", 0x30, []byte{0, 3, 'h', '/', 'p'}, []byte{0x0b, 0x81, 0x01}, []byte("payload"), 1},
		{"SUBACK reason string", 0x90, []byte{0, 7}, []byte{0x1f, 0, 2, 'n', 'o'}, []byte{1}, 2},
		{"UNSUBACK reason string", 0xb0, []byte{0, 7}, []byte{0x1f, 0, 2, 'n', 'o'}, []byte{0}, 2},
		{"CONNACK receive maximum", 0x20, []byte{0, 0}, []byte{0x21, 0, 5}, nil, 1},
		{"PUBACK reason string", 0x40, []byte{0, 7, 0x10}, []byte{0x1f, 0, 1, 'x'}, nil, 1},
		{"DISCONNECT server reference", 0xe0, []byte{0x9c}, []byte{0x1c, 0, 1, 'x'}, nil, 2},
	}
	build := func(typ byte, head, props, tail []byte, propLen int) []byte {
		body := append(append(append(append([]byte{}, head...), byte(propLen)), props...), tail...)
		return append([]byte{typ, byte(len(body))}, body...)
	}
	read := func(b []byte) (packets.Packet, error) {
		pk := packets.Packet{ProtocolVersion: 5}
		var sl slab
		_, err := readPacketInto(bufio.NewReader(bytes.NewReader(b)), &sl, &pk, 0)
		return pk, err
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := read(build(tc.typ, tc.head, tc.props, tc.tail, len(tc.props))); err != nil {
				t.Fatalf("well-formed packet refused: %v", err)
			}
			pk, err := read(build(tc.typ, tc.head, tc.props, tc.tail, len(tc.props)-tc.understate))
			if err == nil {
				t.Fatalf("packet taken: payload %q, reason codes %v", pk.Payload, pk.ReasonCodes)
			}
			if !isProtocolError(err) {
				t.Fatalf("refused, but not as a protocol error: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestClient5PropertySections: the MQTT 5 client of the sink and the
// downlink (paho.golang) took a PUBLISH whose property length runs past
// the end of the packet: it read the payload's bytes as properties and
// handed the message out with an empty payload. Its connection now
// checks every PUBLISH's property section as the light client does: the
// packet ends the connection and nothing is handed out.
func TestClient5PropertySections(t *testing.T) {
	h := newHostileBroker(t)
	got := make(chan message, 4)
	cl := hostileClient5(t, h, "c5-", func(c *clientConfig) {
		c.subs = []subscription{{topic: "h/#", qos: 0}}
		c.onMessage = func(m message) { got <- m }
	})
	c := h.accept(t)
	s := &hostileSession{conn: c, r: bufio.NewReader(c), v: 5}
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if pk, err := readHostile(s.r, 5); err != nil || pk.FixedHeader.Type != packets.Connect {
		t.Fatalf("expected CONNECT: %v", err)
	}
	s.write(t, connackBytes(t, 5, 0))
	for { // paho pings at once
		pk, err := readHostile(s.r, 5)
		if err != nil {
			t.Fatalf("expected SUBSCRIBE: %v", err)
		}
		if pk.FixedHeader.Type == packets.Subscribe {
			s.write(t, encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: 5,
				PacketID: pk.PacketID, ReasonCodes: []byte{0}}))
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := cl.awaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	// Topic "h", a property length of 10 where 4 bytes are left: two
	// payload format indicators, which were the payload.
	s.write(t, []byte{0x30, 8, 0, 1, 'h', 10, 0x01, 0x01, 0x01, 0x00})
	s.write(t, publishBytes(t, 5, "h/after", 0, 0, []byte("after")))
	s.ended(t)
	select {
	case m := <-got:
		t.Fatalf("handed out: topic %q payload %q", m.topic, m.payload)
	default:
	}
}
