package mqtt

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
)

// FuzzEnOSTopic checks that topic parsing never fails and that what it
// returns points back into the topic. Corpus: testdata/fuzz/FuzzEnOSTopic.
func FuzzEnOSTopic(f *testing.F) {
	for _, s := range []string{
		"/sys/pk/dk/thing/measurepoint/post", "/sys/pk/dk/thing/measurepoint/resume/batch_reply",
		"/sys/pk/dk/thing/service/measurepoint/set", "/sys//dk/thing/measurepoint/post", "sys/pk/dk",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		tp := codec.ParseTopic(topic)
		if tp.Kind == codec.OtherTopic && tp.Of == codec.OtherTopic {
			return
		}
		if tp.ProductKey == "" || tp.DeviceKey == "" || strings.Contains(tp.ProductKey, "/") || strings.Contains(tp.DeviceKey, "/") {
			t.Fatalf("%q: keys %q %q", topic, tp.ProductKey, tp.DeviceKey)
		}
		prefix := "/sys/" + tp.ProductKey + "/" + tp.DeviceKey + "/"
		if tp.Kind != codec.ReplyTopic || tp.Of != codec.OtherTopic {
			prefix += "thing/"
		}
		if !strings.HasPrefix(topic, prefix) {
			t.Fatalf("%q does not start with %q", topic, prefix)
		}
		switch tp.Kind {
		case codec.PostTopic:
			if topic != codec.PostTopicFor(tp.ProductKey, tp.DeviceKey) {
				t.Fatalf("%q: post topic rebuilt as %q", topic, codec.PostTopicFor(tp.ProductKey, tp.DeviceKey))
			}
		case codec.ServiceTopic:
			if topic != codec.ServiceTopicFor(tp.ProductKey, tp.DeviceKey, tp.Service) {
				t.Fatalf("%q: service topic rebuilt as %q", topic, codec.ServiceTopicFor(tp.ProductKey, tp.DeviceKey, tp.Service))
			}
		case codec.ReplyTopic:
			if !strings.HasSuffix(topic, "_reply") {
				t.Fatalf("%q: a reply without _reply", topic)
			}
		}
		for i := range 6 {
			segment(topic, i)
		}
	})
}

// fuzzSource is a source with every check on, fed without a broker.
func fuzzSource(t testing.TB) (*Source, *runner) {
	src := buildSource(t, `
reply: true
devices: [D1, D2, D3]
max_payload: 512
schema: {key: asset, fields: {power: float64, status: string, ok: bool, n: int64, productKey: string}}
`, engine.BuildContext{Batch: engine.BatchPolicy{Size: 4}})
	r, err := src.newRunner()
	if err != nil {
		t.Fatal(err)
	}
	return src, r
}

// FuzzSourceMessage feeds arbitrary topics and payloads to the EnOS
// source's message handling: it must count every message, never fail, and
// only emit rows of allowed devices whose key is the topic's device
// segment (or, for batch posts, an item's).
// Corpus: testdata/fuzz/FuzzSourceMessage.
func FuzzSourceMessage(f *testing.F) {
	f.Add("/sys/pk/D1/thing/measurepoint/post", []byte(`{"id":"1","params":{"measurepoints":{"power":1.5,"status":"run","ok":true,"n":3},"time":1700000000000}}`))
	f.Add("/sys/pk/D2/thing/measurepoint/resume", []byte(`{"id":2,"params":{"measurepoints":{"power":{"value":2,"quality":9}},"time":1}}`))
	f.Add("/sys/pk/GW/thing/measurepoint/post/batch", []byte(`{"id":"3","params":[{"deviceKey":"D3","measurepoints":{"power":1},"time":5},{"deviceKey":"D9","time":6}]}`))
	f.Add("/sys/pk/D1/thing/measurepoint/post", []byte(`{"id":"4","params":{"measurepoints":{"power":"x"},"time":1}}`))
	f.Add("/sys/pk/D1/thing/measurepoint/post_reply", []byte(`{"id":"5","code":200}`))
	f.Add("/sys/pk/D4/thing/measurepoint/post", []byte(`{}`))
	src, r := fuzzSource(f)
	defer r.release()
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		before := src.c.messages.Load()
		r.handle(message{topic: topic, payload: payload})
		if src.c.messages.Load() != before+1 {
			t.Fatal("message not counted")
		}
		for len(r.replies) > 0 {
			o := <-r.replies
			if !strings.HasSuffix(o.topic, "_reply") || !utf8.Valid(o.payload) {
				t.Fatalf("reply %q %q", o.topic, o.payload)
			}
			if _, err := codec.ParseReply(o.payload); err != nil && messageID(payload) != "" {
				t.Fatalf("reply %q does not parse: %v", o.payload, err)
			}
		}
		if r.rb.Rows() == 0 {
			return
		}
		tp := codec.ParseTopic(topic)
		device, _ := segment(topic, src.keySeg)
		err := r.flush(func(rec arrow.RecordBatch, ack *engine.Ack) error {
			defer rec.Release()
			keys := rec.Column(1)
			for i := range int(rec.NumRows()) {
				k := keys.ValueStr(i)
				if !src.allow[k] {
					t.Fatalf("row of device %q emitted from %q", k, topic)
				}
				if !tp.Kind.Batch() && k != device {
					t.Fatalf("row key %q, topic device %q", k, device)
				}
			}
			ack.Done()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzEnvelope checks the envelope readers on arbitrary payloads.
func FuzzEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"1","params":[{"deviceKey":"a"},{"deviceKey":"b"}]}`))
	f.Add([]byte(`{"x":{"id":2},"id":"\u0031","params":{}}`))
	f.Add([]byte(`{"id":12.5e3`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_ = messageID(payload)
		n := 0
		eachItemKey(payload, "deviceKey", func(string) bool { n++; return n < 1000 })
		if end := skipValue(payload, 0); end > len(payload) {
			t.Fatalf("skipValue ran past the end: %d > %d", end, len(payload))
		}
	})
}
