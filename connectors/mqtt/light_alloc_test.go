package mqtt

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestLightReadAllocations proves what docs/mqtt.md says of the light
// client: reading and decoding a PUBLISH allocates nothing per message
// (the slab it is read into is shared by many packets), in MQTT 3.1.1 and
// 5.
func TestLightReadAllocations(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(map[byte]string{4: "3.1.1", 5: "5"}[v], func(t *testing.T) {
			const n = 10_000
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: v,
				TopicName: "plant/line1/temperature", Payload: []byte(`{"v":21.5,"ts":1700000000000}`)}
			var stream []byte
			for i := range n + 1 {
				pk.PacketID = uint16(i%65535 + 1)
				stream = append(stream, encode(t, pk)...)
			}
			r := bufio.NewReaderSize(bytes.NewReader(stream), 64<<10)
			var (
				sl  slab
				got packets.Packet
			)
			read := func() {
				got = packets.Packet{ProtocolVersion: v}
				if _, err := readPacketInto(r, &sl, &got, 0); err != nil {
					t.Fatal(err)
				}
				if err := checkPublish(&got); err != nil {
					t.Fatal(err)
				}
			}
			if allocs := testing.AllocsPerRun(n, read); allocs != 0 {
				t.Errorf("%.2f allocations per PUBLISH read, want none", allocs)
			}
			if got.TopicName != pk.TopicName || !bytes.Equal(got.Payload, pk.Payload) {
				t.Errorf("read %q %q, want %q %q", got.TopicName, got.Payload, pk.TopicName, pk.Payload)
			}
		})
	}
}
