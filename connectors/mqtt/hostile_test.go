package mqtt

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
)

// waitCounter polls a counter until it reaches want or the deadline passes.
func waitCounter(t testing.TB, counters *engine.Counters, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for counters.Counter(name).Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("counter %s = %d, want %d (counters %v)", name, counters.Counter(name).Load(), want, counters.Snapshot())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSourceIgnoresOwnReplies: with reply on and a filter that also
// matches the reply topics, the source never decodes its own replies nor
// answers them, whatever the format.
func TestSourceIgnoresOwnReplies(t *testing.T) {
	b := embedded(t)
	cases := []struct {
		name, format, extra, payload string
	}{
		{"csv", "csv", "columns: [time, power]\n", "1700000000000,1.5"},
		{"json", "json", "", `{"id":"7","time":1700000000000,"power":1.5}`},
		{"enos", "enos", "", `{"id":"7","params":{"measurepoints":{"power":1.5},"time":1700000000000}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := "loop" + suffix()
			filter := root + "/#"
			topic := func(dev string) string { return root + "/" + dev }
			if tc.format == "enos" {
				filter = "/sys/" + root + "/#"
				topic = func(dev string) string { return codec.PostTopicFor(root, dev) }
			}
			counters := engine.NewCounters()
			src := buildSource(t, fmt.Sprintf(`
urls: [%s]
client_id: src-%s
clean_session: true
format: %s
%sreply: true
topics: [%q]
topic_pattern: %q
schema: {key: meter, fields: {power: float64}}
`, b.url, suffix(), tc.format, tc.extra, filter, strings.Replace(topic("{deviceKey}"), "/sys/"+root+"/", "/sys/{productKey}/", 1)),
				engine.BuildContext{Counters: counters, Mem: checkedMem(t)})
			all := newSubscriber(t, b.url, filter)
			c := newCollector()
			start(t, src, c)
			pub := newPublisher(t, b.url, 5)
			for i, dev := range []string{"m1", "m2"} {
				pub.publish(topic(dev), []byte(tc.payload))
				waitCounter(t, counters, "ignored", int64(i+1))
			}
			c.waitRows(t, 2)
			snap := counters.Snapshot()
			for name, want := range map[string]int64{"messages": 4, "rows": 2, "replies": 2, "ignored": 2, "bad_payloads": 0} {
				if snap[name] != want {
					t.Errorf("counter %s = %d, want %d", name, snap[name], want)
				}
			}
			for range 4 {
				if m := all.next(t); strings.HasSuffix(m.topic, "_reply_reply") {
					t.Fatalf("the source answered its own reply: %s", m.topic)
				}
			}
		})
	}
}

// TestSourceLongID: an id too long to echo is rejected with 400 and the
// reply carries only its first bytes.
func TestSourceLongID(t *testing.T) {
	b := embedded(t)
	pk := "pk" + suffix()
	counters := engine.NewCounters()
	src := buildSource(t, fmt.Sprintf(`
urls: [%s]
client_id: src-%s
clean_session: true
reply: true
topics: ["/sys/%s/+/thing/measurepoint/post"]
schema: {key: asset, fields: {power: float64}}
`, b.url, suffix(), pk), engine.BuildContext{Counters: counters, Mem: checkedMem(t)})
	replies := newSubscriber(t, b.url, "/sys/"+pk+"/+/thing/measurepoint/post_reply")
	c := newCollector()
	start(t, src, c)
	pub := newPublisher(t, b.url, 5)
	long := strings.Repeat("x", 1<<19)
	post := func(id string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"params":{"measurepoints":{"power":1},"time":1700000000000}}`, id)
	}
	pub.publish(codec.PostTopicFor(pk, "A"), post(long))
	pub.publish(codec.PostTopicFor(pk, "A"), post(strings.Repeat("y", maxEchoedID)))
	c.waitRows(t, 1)
	m := replies.next(t)
	if len(m.payload) > 512 {
		t.Fatalf("reply of %d bytes echoes the id", len(m.payload))
	}
	rep, err := codec.ParseReply(m.payload)
	if err != nil || rep.Code != codec.CodeBadRequest || rep.Message == "" || len(rep.ID) > maxEchoedID {
		t.Fatalf("reply %s (%v), want code 400 with a message and at most %d bytes of id", m.payload, err, maxEchoedID)
	}
	m = replies.next(t)
	if rep, err := codec.ParseReply(m.payload); err != nil || rep.Code != 200 || rep.ID != strings.Repeat("y", maxEchoedID) {
		t.Fatalf("reply %s (%v), want code 200 with the whole id", m.payload, err)
	}
	if got := counters.Counter("bad_payloads").Load(); got != 1 {
		t.Errorf("bad_payloads = %d, want 1", got)
	}
}
