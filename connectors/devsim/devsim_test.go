package devsim_test

import (
	"context"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine"
)

func broker(t *testing.T) string {
	t.Helper()
	b, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.URL()
}

// recorder collects the messages of a topic filter.
type recorder struct {
	mu     sync.Mutex
	topics []string
	bodies [][]byte
	n      chan struct{}
}

func record(t *testing.T, url, filter string) *recorder {
	t.Helper()
	r := &recorder{n: make(chan struct{}, 1<<16)}
	u, _ := neturl.Parse(url)
	ready := make(chan struct{})
	var once sync.Once
	cm, err := autopaho.NewConnection(context.Background(), autopaho.ClientConfig{
		ServerUrls: []*neturl.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err == nil {
					once.Do(func() { close(ready) })
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "rec-" + filepath.Base(t.TempDir()),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				r.mu.Lock()
				r.topics = append(r.topics, pr.Packet.Topic)
				r.bodies = append(r.bodies, pr.Packet.Payload)
				r.mu.Unlock()
				r.n <- struct{}{}
				return true, nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cm.Disconnect(context.Background()) })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the recorder did not subscribe")
	}
	return r
}

func (r *recorder) wait(t *testing.T, n int) ([]string, [][]byte) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-r.n:
		case <-deadline:
			t.Fatalf("got %d messages, want %d", i, n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.topics...), append([][]byte(nil), r.bodies...)
}

func enosDecoder(t *testing.T) (*codec.EnOS, *engine.RecordBuilder) {
	fields := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}}
	for _, p := range devsim.Points {
		fields = append(fields, engine.Field{Name: p, Type: engine.Float64})
	}
	s := engine.MustSchema(fields, "time", "asset")
	m, err := codec.NewMapping(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := codec.NewEnOS(m, codec.EnOSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d, engine.NewRecordBuilder(memory.DefaultAllocator, s)
}

func TestFarm(t *testing.T) {
	cases := []struct {
		name        string
		cfg         devsim.Config
		wantBad     int64
		wantResumed int
	}{
		{"qos0", devsim.Config{Devices: 7, Payloads: 70}, 0, 0},
		{"qos1 two connections", devsim.Config{Devices: 7, Payloads: 70, QoS: 1, Connections: 2, Inflight: 4}, 0, 0},
		{"paced with bad and resumed", devsim.Config{Devices: 5, Payloads: 60, Rate: 6000, Bad: 0.1, Resume: 0.2}, 6, 12},
		{"more points", devsim.Config{Devices: 2, Payloads: 10, Points: 20, Faults: 100}, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := broker(t)
			cfg := tc.cfg
			cfg.URLs = []string{url}
			cfg.ProductKey = "wf"
			cfg.Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			rec := record(t, url, "/sys/#")
			sim, err := devsim.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			st, err := sim.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Sent != cfg.Payloads || st.Errors != 0 || st.Bad != tc.wantBad {
				t.Errorf("stats %+v", st)
			}
			points := cfg.Points
			if points == 0 {
				points = 10
			}
			if st.Points != cfg.Payloads*int64(points) {
				t.Errorf("points %d, want %d", st.Points, cfg.Payloads*int64(points))
			}
			if cfg.QoS == 1 && st.Acked != st.Sent {
				t.Errorf("acked %d of %d", st.Acked, st.Sent)
			}
			topics, bodies := rec.wait(t, int(cfg.Payloads))
			dec, rb := enosDecoder(t)
			defer rb.Release()
			bad, resumed := int64(0), 0
			devices := map[string]bool{}
			for i, body := range bodies {
				parts := strings.Split(topics[i], "/")
				if len(parts) != 7 || parts[2] != "wf" {
					t.Fatalf("topic %s", topics[i])
				}
				if parts[6] == "resume" {
					resumed++
				}
				if _, err := dec.Decode(rb, body, parts[3]); err != nil || strings.HasPrefix(parts[3], "X") {
					bad++
					continue
				}
				devices[parts[3]] = true
			}
			if bad != tc.wantBad || resumed != tc.wantResumed {
				t.Errorf("received %d bad and %d resumed payloads, want %d and %d", bad, resumed, tc.wantBad, tc.wantResumed)
			}
			if len(devices) != cfg.Devices {
				t.Errorf("%d devices posted, want %d", len(devices), cfg.Devices)
			}
		})
	}
}

func TestFarmIsDeterministic(t *testing.T) {
	url := broker(t)
	var runs [2][][]byte
	for i := range runs {
		rec := record(t, url, "/sys/d"+string(rune('0'+i))+"/#")
		sim, err := devsim.New(devsim.Config{URLs: []string{url}, ProductKey: "d" + string(rune('0'+i)), Devices: 1, Payloads: 20,
			Seed: 9, Faults: 50, Start: time.Unix(1_700_000_000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sim.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, runs[i] = rec.wait(t, 20)
	}
	for i := range runs[0] {
		if string(runs[0][i]) != string(runs[1][i]) {
			t.Fatalf("payload %d differs:\n%s\n%s", i, runs[0][i], runs[1][i])
		}
	}
}

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	csv := "time,device,power,status,comment\n" +
		"2024-01-01T00:00:00Z,M1,10.5,true,\"a, b\"\n" +
		"not a time,M2,1,false,x\n" +
		"2024-01-01T00:00:01Z,M2,,false,\n"
	path := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	url := broker(t)
	rec := record(t, url, "/sys/plant/#")
	sim, err := devsim.New(devsim.Config{URLs: []string{url}, ProductKey: "plant",
		Replay: &devsim.Replay{Path: path, KeyColumn: "device", TimeLayout: "rfc3339"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sim.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 2 || st.Skipped != 1 || st.Points != 4 {
		t.Errorf("stats %+v", st)
	}
	topics, bodies := rec.wait(t, 2)
	want := []string{
		`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"power":10.5,"status":true,"comment":"a, b"},"time":1704067200000}}`,
		`{"id":"2","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"status":false},"time":1704067201000}}`,
	}
	for i := range want {
		if string(bodies[i]) != want[i] {
			t.Errorf("payload %d:\n got %s\nwant %s", i, bodies[i], want[i])
		}
	}
	if topics[0] != "/sys/plant/M1/thing/measurepoint/post" || topics[1] != "/sys/plant/M2/thing/measurepoint/post" {
		t.Errorf("topics %v", topics)
	}
}

func TestCounter(t *testing.T) {
	url := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := devsim.NewCounter(ctx, devsim.Config{URLs: []string{url}}, "/sys/c/#")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	rec := record(t, url, "/sys/c/#")
	sim, _ := devsim.New(devsim.Config{URLs: []string{url}, ProductKey: "c", Devices: 3, Payloads: 30, QoS: 1})
	if _, err := sim.Run(ctx); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 30)
	if err := k.Wait(ctx, 30); err != nil {
		t.Fatalf("counted %d: %v", k.Count(), err)
	}
	if k.Bytes() == 0 {
		t.Error("no bytes counted")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []devsim.Config{
		{QoS: 2}, {Points: 65}, {Rate: -1}, {Bad: 2}, {ProductKey: "a/b"}, {Interval: time.Microsecond},
		{Replay: &devsim.Replay{Path: "missing.csv", DeviceKey: "x"}},
		{Replay: &devsim.Replay{Path: "x.csv"}},
		{CommandTopic: "plc/cmd"}, {CommandTopic: "plc/{asset}/#"},
		{CommandTopic: "plc/{asset}/cmd", ReplyTopic: "plc/{asset}/{point}"},
	} {
		if _, err := devsim.New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
