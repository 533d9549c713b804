// Package drilltest holds what the crash drills share: the kill drill
// (TestKillDrill, cmd/sluice) and the power-loss drill (TestPowerLossDrill,
// pipelines). Both feed a wind farm's readings as EnOS measure-point posts
// over MQTT (QoS 1) to two runs of one pipeline — 1-minute windows and an
// alert held `for: 5m`, every output to NATS JetStream — leave one alone,
// crash the other again and again, and compare what the two delivered,
// deduplicated by Nats-Msg-Id, byte for byte.
//
// Here are the dataset (Farm) and the counts it must produce, the
// publisher, the NATS sinks and JetStream streams of a run, reading a
// stream and comparing two outputs. Only tests import it.
package drilltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsgo "github.com/nats-io/nats.go"
)

// Broker is the address of the machine's MQTT broker the drills publish to.
const Broker = "127.0.0.1:1883"

// Dedup is how long a drill's streams remember message ids, and the
// duplicate window of its sinks: longer than a drill takes.
const Dedup = 10 * time.Minute

// Base is the event time of minute 0 of the dataset.
var Base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Farm is the dataset of a drill: Turbines turbines (WT00, WT01, …) post
// one reading a minute for Minutes minutes of event time, then one more
// each at minute Close, far enough ahead to close every window of the
// readings before it.
type Farm struct {
	Turbines, Minutes, Close int
}

// Hot says whether turbine i runs hot at minute m: 10 minutes in every 30
// (an alert held for 5 minutes, then cleared) and 3 more (pending only,
// never raised), shifted per turbine.
func Hot(i, m int) bool {
	p := (m + 3*i) % 30
	return p < 10 || p >= 15 && p < 18
}

// Reading returns the temperature and power of turbine i at minute m:
// above 80 °C when Hot, below 75 °C otherwise.
func Reading(i, m int) (temp, power float64) {
	temp = 60 + float64(m%5)/8 + float64(i)/4
	if Hot(i, m) {
		temp = 90 + float64(m%7)/8 + float64(i)/4
	}
	return temp, 1000 + float64((m*37+i*101)%500) + float64(i)/4
}

// Post is the EnOS measure-point post of turbine i at minute m.
func (f Farm) Post(i, m int) []byte {
	temp, power := Reading(i, m)
	ms := Base.Add(time.Duration(m) * time.Minute).UnixMilli()
	return fmt.Appendf(nil, `{"id":"%d","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":%s,"power":%s},"time":%d}}`,
		m*f.Turbines+i, strconv.FormatFloat(temp, 'g', -1, 64), strconv.FormatFloat(power, 'g', -1, 64), ms)
}

// Alerts returns how many alerts the dataset raises and clears under the
// drills' rule over 1-minute averages (expr: temp_avg > 80, clear:
// temp_avg < 75, for: 5m): raised once hot has held 5 minutes, cleared at
// the first minute that is not hot.
func (f Farm) Alerts() (raised, cleared int) {
	for i := range f.Turbines {
		start, up := -1, false
		for m := range f.Minutes {
			switch {
			case Hot(i, m) && !up:
				if start < 0 {
					start = m
				}
				if m-start >= 5 {
					up = true
					raised++
				}
			case !Hot(i, m):
				if up {
					cleared++
				}
				start, up = -1, false
			}
		}
	}
	return raised, cleared
}

// Counts returns the messages per kind (as Output.Counts names them) the
// dataset makes: a row per turbine and window for each tumbling window of
// windows (its sink's kind -> its size, whole minutes), and the alerts of
// Alerts as "alert raised" and "alert cleared".
func (f Farm) Counts(windows map[string]time.Duration) map[string]int {
	raised, cleared := f.Alerts()
	c := map[string]int{"alert raised": raised, "alert cleared": cleared}
	for kind, size := range windows {
		c[kind] = f.Turbines * f.Minutes / int(size/time.Minute)
	}
	return c
}

// Total returns the sum of counts.
func Total(counts map[string]int) uint64 {
	var n uint64
	for _, c := range counts {
		n += uint64(c)
	}
	return n
}

// Topic is the MQTT topic of turbine i's posts under product key pk.
func Topic(pk string, i int) string {
	return fmt.Sprintf("/sys/%s/WT%02d/thing/measurepoint/post", pk, i)
}

// Client connects an MQTT client with a clean session to Broker as id, and
// disconnects it when the test ends.
func Client(t *testing.T, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + Broker).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// Publisher publishes a farm's readings in the background.
type Publisher struct {
	minutes atomic.Int64
	done    chan error
}

// Publish publishes the farm's readings with c at QoS 1, minute by minute
// spread evenly over the wall time over, then the closing readings: each
// turbine's reading to the topics of every product key of keys in turn,
// each waited for before the next. It returns at once.
func (f Farm) Publish(c paho.Client, over time.Duration, keys ...string) *Publisher {
	return f.PublishPaced(c, over, nil, keys...)
}

// PublishPaced is Publish held back by a consumer: each minute goes out
// only while ready (nil: always) says the consumer reads, so that what
// waits for it at the broker does not grow however long it is down (a
// killed engine restarting on a loaded machine): Mosquitto drops what
// waits for a client beyond max_queued_messages (1000 by default). A
// consumer not ready for two minutes fails the publishing.
func (f Farm) PublishPaced(c paho.Client, over time.Duration, ready func() bool, keys ...string) *Publisher {
	p := &Publisher{done: make(chan error, 1)}
	send := func(i, m int) error {
		post := f.Post(i, m)
		for _, pk := range keys {
			tok := c.Publish(Topic(pk, i), 1, false, post)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				return fmt.Errorf("publish minute %d of WT%02d: %v", m, i, tok.Error())
			}
		}
		return nil
	}
	go func() {
		t0 := time.Now()
		for m := range f.Minutes {
			time.Sleep(time.Until(t0.Add(time.Duration(m) * over / time.Duration(f.Minutes))))
			for since := time.Now(); ready != nil && !ready(); time.Sleep(10 * time.Millisecond) {
				if time.Since(since) > 2*time.Minute {
					p.done <- fmt.Errorf("publish minute %d: the consumer was not ready for 2m", m)
					return
				}
			}
			for i := range f.Turbines {
				if err := send(i, m); err != nil {
					p.done <- err
					return
				}
			}
			p.minutes.Add(1)
		}
		for i := range f.Turbines {
			if err := send(i, f.Close); err != nil {
				p.done <- err
				return
			}
		}
		p.done <- nil
	}()
	return p
}

// Minutes returns how many minutes of readings are published, the
// closing readings not counted.
func (p *Publisher) Minutes() int64 { return p.minutes.Load() }

// Wait waits until every reading is published, or publishing failed, and
// returns the error.
func (p *Publisher) Wait() error { return <-p.done }

// Seed returns the seed of a drill's random moments — the value of the
// environment variable env, or the clock — and logs it with how to repeat
// the drill; drill names the drill in the log.
func Seed(t *testing.T, drill, env string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		seed = v
	}
	t.Logf("%s seed %d (repeat with %s=%d)", drill, seed, env, seed)
	return seed
}

// Sinks describes the NATS sinks of a drill's pipeline: one per kind, the
// sink of kind k named k_out, reading step k and publishing as JSON to
// Subject.k in Stream, with a duplicate window of Dedup.
type Sinks struct {
	URL, Subject, Stream string
	// Drain is the forwarder's drain timeout, as the pipeline writes it
	// ("5s").
	Drain string
	// Buffer is the sink's buffer section ("{max_bytes: 256MiB}"), or ""
	// for the default.
	Buffer string
}

// YAML returns the sinks of kinds as entries of a pipeline's sinks
// section.
func (s Sinks) YAML(kinds ...string) string {
	var b strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&b, `  %[1]s_out:
    type: nats
    input: %[1]s
    url: %[2]s
    subject: %[3]s.%[1]s
    stream: %[4]s
    duplicate_window: %[5]s
    encoding: json
    timeout: 2s
`, k, s.URL, s.Subject, s.Stream, fmt.Sprintf("%dm", Dedup/time.Minute))
		if s.Buffer != "" {
			fmt.Fprintf(&b, "    buffer: %s\n", s.Buffer)
		}
		fmt.Fprintf(&b, "    forward: {retry_min: 20ms, retry_max: 200ms, drain_timeout: %s}\n", s.Drain)
	}
	return b.String()
}

// JetStream connects to the NATS server at url and returns its JetStream
// context; the connection closes when the test ends, after the streams
// AddStream made are deleted.
func JetStream(t *testing.T, url string) natsgo.JetStreamContext {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// AddStream creates the file-stored stream name over the subjects
// subject.>, remembering message ids for Dedup, and deletes it when the
// test ends.
func AddStream(t *testing.T, js natsgo.JetStreamContext, name, subject string) {
	t.Helper()
	if _, err := js.AddStream(&natsgo.StreamConfig{Name: name, Subjects: []string{subject + ".>"},
		Storage: natsgo.FileStorage, Duplicates: Dedup}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(name) })
}

// Msgs returns how many messages stream holds, or 0 if its state cannot
// be read.
func Msgs(js natsgo.JetStreamContext, stream string) uint64 {
	info, err := js.StreamInfo(stream)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// WaitDelivered waits until every stream of streams holds at least total
// messages and none has changed for a second, or until wait is up; the
// comparison of the outputs then says what is amiss.
func WaitDelivered(js natsgo.JetStreamContext, total uint64, wait time.Duration, streams ...string) {
	last := make([]uint64, len(streams))
	now := make([]uint64, len(streams))
	stable := time.Now()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		done := true
		for i, s := range streams {
			now[i] = Msgs(js, s)
			done = done && now[i] >= total
		}
		if !slices.Equal(now, last) {
			copy(last, now)
			stable = time.Now()
		}
		if done && time.Since(stable) > time.Second {
			return
		}
	}
}

// Msg is one message of an output stream.
type Msg struct {
	// ID is its stable id (the "id" header; Nats-Msg-Id adds a signature).
	ID string
	// Kind is the last token of its subject (the step its sink reads),
	// or, for the alert step "hot", "alert " and the alert's state.
	Kind string
	// Payload is its body with the backfill flag set to false.
	Payload []byte
}

// Output is what a run delivered to its stream.
type Output struct {
	// Msgs are its messages by id, the first of each id.
	Msgs map[string]Msg
	// Copies counts the messages stored again under an id already seen.
	Copies int
	// Backfill counts the messages sent from the backlog of a restart.
	Backfill int
}

// ReadStream reads every message of a stream.
func ReadStream(t *testing.T, js natsgo.JetStreamContext, stream string) Output {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	out := Output{Msgs: map[string]Msg{}}
	for q := info.State.FirstSeq; info.State.Msgs > 0 && q <= info.State.LastSeq; q++ {
		m, err := js.GetMsg(stream, q)
		if err != nil {
			t.Fatalf("%s seq %d: %v", stream, q, err)
		}
		id := m.Header.Get("id")
		if _, ok := out.Msgs[id]; ok {
			out.Copies++
			continue
		}
		// The one byte that says which lane sent the row.
		p := m.Data
		if bytes.HasSuffix(p, []byte(`,"backfill":true}`)) {
			out.Backfill++
			p = append(bytes.TrimSuffix(p, []byte(`true}`)), `false}`...)
		}
		out.Msgs[id] = Msg{ID: id, Kind: kind(m.Subject, p), Payload: p}
	}
	return out
}

// kind returns the kind of a message on subject with payload p.
func kind(subject string, p []byte) string {
	k := subject[strings.LastIndexByte(subject, '.')+1:]
	if k != "hot" {
		return k
	}
	var a struct {
		MP struct {
			State string `json:"state"`
		} `json:"measurepoints"`
	}
	_ = json.Unmarshal(p, &a)
	return "alert " + a.MP.State
}

// Counts returns the number of messages per kind.
func (o Output) Counts() map[string]int {
	c := map[string]int{}
	for _, m := range o.Msgs {
		c[m.Kind]++
	}
	return c
}

// IDLess orders message ids <edge>/<stream>/<seq> by stream, then by
// sequence number; ids of another form compare as strings.
func IDLess(a, b string) int {
	ia, ib := strings.LastIndexByte(a, '/'), strings.LastIndexByte(b, '/')
	if ia < 0 || ib < 0 {
		return strings.Compare(a, b)
	}
	if c := strings.Compare(a[:ia], b[:ib]); c != 0 {
		return c
	}
	sa, errA := strconv.ParseUint(a[ia+1:], 10, 64)
	sb, errB := strconv.ParseUint(b[ib+1:], 10, 64)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	switch {
	case sa < sb:
		return -1
	case sa > sb:
		return 1
	}
	return 0
}

// Diff describes how got (the drill's output) differs from want (the
// reference's), or returns "": messages missing from got, extra in it,
// or with another payload, the first five of each by IDLess; and, unless
// allowCopies, ids stored twice in got's stream.
func Diff(want, got Output, allowCopies bool) string {
	var missing, extra, differ []string
	for id, w := range want.Msgs {
		g, ok := got.Msgs[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case !bytes.Equal(w.Payload, g.Payload):
			differ = append(differ, id)
		}
	}
	for id := range got.Msgs {
		if _, ok := want.Msgs[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra)+len(differ) == 0 && (allowCopies || got.Copies == 0) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "counts per kind: reference %v, drill %v\n", want.Counts(), got.Counts())
	fmt.Fprintf(&b, "%d missing, %d extra, %d differing, %d ids stored twice in the drill's stream\n",
		len(missing), len(extra), len(differ), got.Copies)
	show := func(what string, ids []string, f func(id string) string) {
		slices.SortFunc(ids, IDLess)
		for i, id := range ids {
			if i == 5 {
				fmt.Fprintf(&b, "  ... %d more %s\n", len(ids)-i, what)
				break
			}
			fmt.Fprintf(&b, "  %s %s %s\n", what, id, f(id))
		}
	}
	show("missing", missing, func(id string) string { return string(want.Msgs[id].Payload) })
	show("extra", extra, func(id string) string { return string(got.Msgs[id].Payload) })
	show("differing", differ, func(id string) string {
		return fmt.Sprintf("\n    reference %s\n    drill     %s", want.Msgs[id].Payload, got.Msgs[id].Payload)
	})
	return b.String()
}
