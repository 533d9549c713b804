package mqtt

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzLightClientRead feeds the light client's packet reader whatever a
// broker may send, through a reader that splits packets everywhere: it
// never panics, keeps at most maxPayload+1 payload bytes, and every
// payload it hands out is the tail of its packet as sent, byte for byte
// (nothing from another packet or another slab). Corpus:
// testdata/fuzz/FuzzLightClientRead.
func FuzzLightClientRead(f *testing.F) {
	const maxPayload = 64
	for _, v := range []byte{4, 5} {
		f.Add(publishBytes(f, v, "a/b", 1, 1, []byte("payload")), v == 5)
		f.Add(publishBytes(f, v, "a/b", 0, 0, bytes.Repeat([]byte{'x'}, 300)), v == 5)
		f.Add(append(connackBytes(f, v, 0), encode(f, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback},
			ProtocolVersion: v, PacketID: 7, ReasonCodes: []byte{1, 0x80}})...), v == 5)
		f.Add(encode(f, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: v,
			TopicName: "t", PacketID: 3, Payload: []byte("p"), Properties: packets.Properties{
				User: []packets.UserProperty{{Key: "k", Val: "v"}}, ContentType: "json", SubscriptionIdentifier: []int{1, 2}}}), v == 5)
		f.Add(encode(f, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: v,
			ReasonCode: packets.ErrServerMoved.Code, Properties: packets.Properties{ServerReference: "x"}}), v == 5)
	}
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1, 'a'}, false)
	f.Add([]byte{0xd0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, false)
	f.Add([]byte{0x32, 11, 0, 1, 'h', 0, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 'x'}, true)
	f.Add([]byte{0x32, 7, 0, 1, 'h', 0, 1, 0x7f, 'x'}, true)
	// Properties running past their section: a message expiry interval
	// into the payload, a reason string into a SUBACK's reason codes.
	f.Add([]byte{0x32, 12, 0, 1, 'h', 0, 1, 1, 0x02, 'a', 'b', 'c', 'd', 'x'}, true)
	f.Add([]byte{0x90, 8, 0, 7, 3, 0x1f, 0, 2, 'n', 'o', 1}, true)
	f.Fuzz(func(t *testing.T, data []byte, v5 bool) {
		v := byte(4)
		if v5 {
			v = 5
		}
		cr := &countingReader{r: bytes.NewReader(data)}
		r := bufio.NewReaderSize(cr, 16)
		var sl slab
		for start := 0; ; {
			pk := packets.Packet{ProtocolVersion: v}
			dropped, err := readPacketInto(r, &sl, &pk, maxPayload)
			if err != nil {
				return
			}
			end := cr.n - r.Buffered() // just past the packet
			if header := end - start - pk.FixedHeader.Remaining; header > 5 {
				t.Fatalf("packet taken with a fixed header of %d bytes: %q", header, data[start:end])
			}
			start = end
			if pk.FixedHeader.Type != packets.Publish {
				continue
			}
			_ = checkPublish(&pk)
			if dropped < 0 || dropped > 0 && len(pk.Payload) > maxPayload+1 {
				t.Fatalf("%d payload bytes kept, %d dropped", len(pk.Payload), dropped)
			}
			tail := len(pk.Payload) + dropped
			if tail > pk.FixedHeader.Remaining || tail > end || !bytes.Equal(pk.Payload, data[end-tail:end-dropped]) {
				t.Fatalf("payload %q is not the tail of its packet %q", pk.Payload, data[:end])
			}
			// MQTT 5: the payload starts where the property section
			// ends, and every property lies within the section.
			if v == 5 && dropped == 0 {
				body := data[end-pk.FixedHeader.Remaining : end]
				at := 2 + len(pk.TopicName)
				if pk.FixedHeader.Qos > 0 {
					at += 2
				}
				if sec, err := checkProperties(body, at); err != nil || sec != len(body)-tail {
					t.Fatalf("payload taken at %d of %q, property section: end %d, %v", len(body)-tail, body, sec, err)
				}
			}
		}
	})
}
