package mqtt

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
)

// TestSourceBadInput sends every kind of bad input among good messages
// and checks that each is counted per device, answered, acknowledged and
// logged, while the good messages of every device flow.
func TestSourceBadInput(t *testing.T) {
	for _, b := range brokers(t) {
		t.Run(b.name, func(t *testing.T) {
			sfx := suffix()
			pk := "pk" + sfx
			cfg := fmt.Sprintf(`
urls: [%s]
client_id: src-%s
reply: true
devices: [A, B]
max_payload: 200
max_rate_per_device: 1
rate_burst: 4
schema: {key: asset, fields: {power: float64}}
topics: ["/sys/%s/+/thing/measurepoint/post"]
`, b.url, sfx, pk)
			counters := engine.NewCounters()
			src := buildSource(t, cfg, engine.BuildContext{Counters: counters, Mem: checkedMem(t)})
			frozen := time.Unix(1_700_000_000, 0)
			src.now = func() time.Time { return frozen } // no tokens come back during the test
			replies := newSubscriber(t, b.url, "/sys/"+pk+"/+/thing/measurepoint/post_reply")
			c := newCollector()
			r := start(t, src, c)
			pub := newPublisher(t, b.url, 5)
			good := func(id string, v float64) string {
				return fmt.Sprintf(`{"id":%q,"params":{"measurepoints":{"power":%g},"time":1700000000000}}`, id, v)
			}
			type send struct {
				dev, payload string
				code         int
			}
			sends := []send{
				{"A", good("a1", 1), 200},
				{"A", `{"id":"a2","params":{"measurepoints":{"power":1}`, 400},                 // malformed
				{"A", `{"id":"a3","params":{"measurepoints":{"power":"high"},"time":1}}`, 400}, // wrong type
				{"C", good("c1", 1), 404},                                                      // unknown device
				{"B", good("b0", 1) + strings.Repeat(" ", 200), 413},                           // oversized
				{"A", good("a4", 2), 200},
				{"B", good("b1", 1), 200},
				{"B", good("b2", 2), 200},
				{"B", good("b3", 3), 200},
				{"B", good("b4", 4), 200},
				{"B", good("b5", 5), 429}, // the fifth message at once
			}
			for _, s := range sends {
				pub.publish(codec.PostTopicFor(pk, s.dev), []byte(s.payload))
			}
			rows := c.waitRows(t, 6)
			gotCodes := map[string]int{}
			for range sends {
				m := replies.next(t)
				rep, err := codec.ParseReply(m.payload)
				if err != nil {
					t.Fatalf("reply %s: %v", m.payload, err)
				}
				if rep.Code != 200 && rep.Message == "" {
					t.Errorf("reply %s: an error reply needs a message", m.payload)
				}
				gotCodes[rep.ID] = rep.Code
			}
			r.stop(t)

			for _, s := range sends {
				id := messageID([]byte(s.payload))
				if s.code == 413 {
					id = "b0"
				}
				if gotCodes[id] != s.code {
					t.Errorf("reply to %s: code %d, want %d", id, gotCodes[id], s.code)
				}
			}
			var keys []string
			for _, row := range rows {
				keys = append(keys, row[1].(string))
			}
			if want := []string{"A", "A", "B", "B", "B", "B"}; !slices.Equal(keys, want) {
				t.Errorf("rows of %v, want %v", keys, want)
			}
			snap := counters.Snapshot()
			for name, want := range map[string]int64{
				"messages": 11, "rows": 6, "bad_payloads": 2, "unknown_devices": 1, "oversized": 1,
				"rate_limited": 1, "acked": 11, "replies": 11,
			} {
				if snap[name] != want {
					t.Errorf("counter %s = %d, want %d", name, snap[name], want)
				}
			}
			stats := map[string]DeviceStats{}
			for _, d := range src.Devices() {
				stats[d.Device] = d
			}
			want := map[string]DeviceStats{
				"A": {Device: "A", Messages: 4, Rows: 2, Bad: 2},
				"B": {Device: "B", Messages: 6, Rows: 4, Oversized: 1, RateLimited: 1},
				"C": {Device: "C", Messages: 1, Unknown: 1},
			}
			for dev, w := range want {
				g := stats[dev]
				if g.LastError == "" && (w.Bad+w.Oversized+w.RateLimited+w.Unknown) > 0 {
					t.Errorf("device %s: no last error", dev)
				}
				g.LastError, g.LastErrorAt = "", time.Time{}
				if g != w {
					t.Errorf("device %s: %+v, want %+v", dev, g, w)
				}
			}
		})
	}
}
