package mqtt

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkLightRead measures the light client's reading and decoding of
// one PUBLISH (the per-message cost of the source's connection): MQTT
// 3.1.1, MQTT 5 without properties (the usual case) and MQTT 5 with a
// user property.
func BenchmarkLightRead(b *testing.B) {
	cases := []struct {
		name  string
		v     byte
		props packets.Properties
	}{
		{"3.1.1", 4, packets.Properties{}},
		{"5", 5, packets.Properties{}},
		{"5-properties", 5, packets.Properties{User: []packets.UserProperty{{Key: "site", Val: "north"}}}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: tc.v,
				TopicName: "plant/line1/temperature", Payload: []byte(`{"v":21.5,"ts":1700000000000}`), Properties: tc.props}
			var stream []byte
			const n = 4096
			for i := range n {
				pk.PacketID = uint16(i + 1)
				stream = append(stream, encode(b, pk)...)
			}
			src := bytes.NewReader(stream)
			r := bufio.NewReaderSize(src, readBufferSize)
			var (
				sl  slab
				got packets.Packet
			)
			b.SetBytes(int64(len(stream) / n))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%n == 0 {
					src.Reset(stream)
					r.Reset(src)
				}
				got = packets.Packet{ProtocolVersion: tc.v}
				if _, err := readPacketInto(r, &sl, &got, 0); err != nil {
					b.Fatal(err)
				}
				if err := checkPublish(&got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
