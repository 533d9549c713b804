package mqtt

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

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
			waitCounter(t, counters, "replies", 2) // counted once published, which may be after the reply came back
			snap := counters.Snapshot()
			for name, want := range map[string]int64{"messages": 4, "replies": 2, "ignored": 2, "bad_payloads": 0} {
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

// heapNow returns the live heap after a collection.
func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// handleAll feeds messages straight to a runner, flushing full batches.
func handleAll(r *runner, n int, msg func(i int) message) {
	emit := func(rec arrow.RecordBatch, ack *engine.Ack) error { rec.Release(); ack.Done(); return nil }
	for i := range n {
		r.handle(msg(i))
		if r.rb.Rows() >= 1024 {
			_ = r.flush(emit)
		}
	}
	_ = r.flush(emit)
}

// TestDeviceTableHeapBound: keys from the network cannot make the source
// hold memory beyond its bounds: long keys are refused and never tracked,
// and churning keys evict the devices seen least recently, within
// max_devices and max_device_bytes.
func TestDeviceTableHeapBound(t *testing.T) {
	post := []byte(`{"id":"1","params":{"measurepoints":{"power":1},"time":1700000000000}}`)
	cases := []struct {
		name      string
		extra     string
		n         int
		key       func(i int) string
		bound     int64 // bytes the source may hold
		badKeys   int64
		maxDevs   int
		evictions bool
	}{
		{"long keys", "", 20_000, func(i int) string { return fmt.Sprintf("%032000d", i) }, 4 << 20, 20_000, 0, false},
		{"churn, default bounds", "devices: [legit]\n", 300_000, func(i int) string { return fmt.Sprintf("junk-%0120d", i) },
			defaultMaxDeviceBytes, 0, defaultMaxDevices, true},
		{"churn, byte bound", "devices: [legit]\nmax_devices: 1000000\nmax_device_bytes: 16777216\n", 300_000,
			func(i int) string { return fmt.Sprintf("junk-%0120d", i) }, 16 << 20, 0, 1_000_000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			counters := engine.NewCounters()
			src := buildSource(t, "reply: true\nschema: {key: asset, fields: {power: float64}}\n"+tc.extra,
				engine.BuildContext{Counters: counters, Batch: engine.BatchPolicy{Size: 1024}})
			r, err := src.newRunner()
			if err != nil {
				t.Fatal(err)
			}
			defer r.release()
			before := heapNow()
			handleAll(r, tc.n, func(i int) message {
				return message{topic: codec.PostTopicFor("pk", tc.key(i)), payload: post}
			})
			// Drop the queued replies: they are the reply queue's bound, not the table's.
			for len(r.replies) > 0 {
				<-r.replies
			}
			grown := int64(heapNow()) - int64(before)
			devs, bytes := src.TrackedDevices()
			t.Logf("%d messages: heap grew by %.1f MiB; %d devices tracked, %.1f MiB accounted; %d evicted",
				tc.n, float64(grown)/(1<<20), devs, float64(bytes)/(1<<20), counters.Counter("devices_evicted").Load())
			if grown > tc.bound {
				t.Errorf("the heap grew by %d bytes, over the bound of %d", grown, tc.bound)
			}
			if got := counters.Counter("bad_device_keys").Load(); got != tc.badKeys {
				t.Errorf("bad_device_keys = %d, want %d", got, tc.badKeys)
			}
			if tc.maxDevs > 0 && devs > tc.maxDevs || bytes > tc.bound {
				t.Errorf("%d devices taking %d bytes tracked", devs, bytes)
			}
			if ev := counters.Counter("devices_evicted").Load(); (ev > 0) != tc.evictions {
				t.Errorf("devices_evicted = %d", ev)
			}
			// The source still takes good input.
			rows := counters.Counter("rows").Load()
			handleAll(r, 1, func(int) message { return message{topic: codec.PostTopicFor("pk", "legit"), payload: post} })
			if got := counters.Counter("rows").Load(); got != rows+1 {
				t.Errorf("a good post after the flood gave %d rows", got-rows)
			}
		})
	}
}

// TestKeyFloodDoesNotStarveNewDevices: after a flood of junk keys, new
// legitimate devices each get their own rate limit and are accepted.
func TestKeyFloodDoesNotStarveNewDevices(t *testing.T) {
	counters := engine.NewCounters()
	src := buildSource(t, "max_rate_per_device: 1\nschema: {key: asset, fields: {power: float64}}\n",
		engine.BuildContext{Counters: counters, Batch: engine.BatchPolicy{Size: 1024}})
	frozen := time.Unix(1_700_000_000, 0)
	src.now = func() time.Time { return frozen } // no tokens come back
	r, err := src.newRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.release()
	post := []byte(`{"id":"1","params":{"measurepoints":{"power":1},"time":1700000000000}}`)
	handleAll(r, 100_000, func(i int) message {
		return message{topic: codec.PostTopicFor("pk", fmt.Sprintf("junk%d", i)), payload: post}
	})
	limited := counters.Counter("rate_limited").Load()
	handleAll(r, 200, func(i int) message {
		return message{topic: codec.PostTopicFor("pk", fmt.Sprintf("T%04d", i)), payload: post}
	})
	if got := counters.Counter("rate_limited").Load() - limited; got != 0 {
		t.Errorf("%d of 200 new devices were rate limited after the flood", got)
	}
	if got := counters.Counter("rows").Load(); got != 100_200 {
		t.Errorf("rows = %d, want 100200", got)
	}
	// Their limit still holds: a second message at once is refused.
	handleAll(r, 1, func(int) message { return message{topic: codec.PostTopicFor("pk", "T0000"), payload: post} })
	if got := counters.Counter("rate_limited").Load() - limited; got != 1 {
		t.Errorf("a device over its rate was not limited (%d)", got)
	}
}

// TestSourceLongKeysOverTheBroker: posts with huge device keys, among good
// ones, are refused with 400 and counted while the good posts flow.
func TestSourceLongKeysOverTheBroker(t *testing.T) {
	b := embedded(t)
	pk := "pk" + suffix()
	counters := engine.NewCounters()
	src := buildSource(t, fmt.Sprintf(`
urls: [%s]
client_id: src-%s
clean_session: true
reply: true
topics: ["/sys/%s/+/thing/measurepoint/post", "/sys/%s/+/thing/measurepoint/post/batch"]
schema: {key: asset, fields: {power: float64}}
`, b.url, suffix(), pk, pk), engine.BuildContext{Counters: counters, Mem: checkedMem(t)})
	replies := newSubscriber(t, b.url, "/sys/"+pk+"/+/thing/measurepoint/#")
	c := newCollector()
	start(t, src, c)
	pub := newPublisher(t, b.url, 5)
	post := func(id string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"params":{"measurepoints":{"power":1},"time":1700000000000}}`, id)
	}
	batch := func(id, dev string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"params":[{"deviceKey":%q,"measurepoints":{"power":1},"time":1700000000000}]}`, id, dev)
	}
	long := strings.Repeat("k", 32_000)
	for i := range 20 {
		pub.publish(codec.PostTopicFor(pk, long+strconv.Itoa(i)), post("long"))
		pub.publish(codec.PostTopicFor(pk, "A"), post("good"))
	}
	for _, dev := range []string{"a/b", "a+b", "#", long} {
		pub.publish(codec.PostTopicFor(pk, "GW")+"/batch", batch("sub", dev))
	}
	pub.publish(codec.PostTopicFor(pk, "GW")+"/batch", batch("good", "B"))
	c.waitRows(t, 21)
	waitCounter(t, counters, "bad_device_keys", 24)
	codes := map[string][]int{}
	for range 45 {
		m := replies.next(t)
		if !codec.IsReplyTopic(m.topic) {
			continue
		}
		rep, err := codec.ParseReply(m.payload)
		if err != nil {
			t.Fatal(err)
		}
		codes[rep.ID] = append(codes[rep.ID], rep.Code)
	}
	for id, want := range map[string]int{"long": 400, "sub": 400, "good": 200} {
		for _, code := range codes[id] {
			if code != want {
				t.Errorf("reply to %s: code %d, want %d", id, code, want)
			}
		}
	}
	if devs, _ := src.TrackedDevices(); devs != 2 {
		t.Errorf("%d devices tracked, want 2 (A and GW)", devs)
	}
}
