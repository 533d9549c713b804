package mqtt

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/engine"
)

// BenchmarkHandle measures the source's own work per message, without a
// broker: decoding an EnOS post of ten points into the batch being built,
// and emitting batches of 1024 rows.
func BenchmarkHandle(b *testing.B) {
	src := buildSource(b, `
schema: {key: asset, fields: {wind_speed: float64, power: float64, rotor_rpm: float64, pitch_angle: float64,
  nacelle_temp: float64, gearbox_temp: float64, generator_temp: float64, ambient_temp: float64, yaw_error: float64, vibration: float64}}
`, engine.BuildContext{Batch: engine.BatchPolicy{Size: 1024}})
	r, err := src.newRunner()
	if err != nil {
		b.Fatal(err)
	}
	defer r.release()
	payload := []byte(`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"wind_speed":7.31,"power":{"value":1234.5,"quality":0},"rotor_rpm":10.2,"pitch_angle":0,"nacelle_temp":31.2,"gearbox_temp":61.5,"generator_temp":75.3,"ambient_temp":12.1,"yaw_error":-1.4,"vibration":3.1},"time":1700000000000}}`)
	topic := codec.PostTopicFor("turbine", "T0001")
	emit := func(rec arrow.RecordBatch, ack *engine.Ack) error { rec.Release(); ack.Done(); return nil }
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r.handle(message{topic: topic, payload: payload})
		if r.rb.Rows() >= 1024 {
			_ = r.flush(emit)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payloads/s")
	b.ReportMetric(10*float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkHandleDevices is BenchmarkHandle with posts from many devices
// in turn: the device table's lookups and least-recently-seen order, and,
// beyond max_devices (100,000), an eviction per message.
func BenchmarkHandleDevices(b *testing.B) {
	for _, n := range []int{10_000, 200_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			src := buildSource(b, "max_rate_per_device: 1000\nschema: {key: asset, fields: {power: float64}}\n",
				engine.BuildContext{Batch: engine.BatchPolicy{Size: 1024}})
			r, err := src.newRunner()
			if err != nil {
				b.Fatal(err)
			}
			defer r.release()
			topics := make([]string, n)
			for i := range topics {
				topics[i] = codec.PostTopicFor("turbine", fmt.Sprintf("T%07d", i))
			}
			payload := []byte(`{"id":"1","params":{"measurepoints":{"power":1234.5},"time":1700000000000}}`)
			emit := func(rec arrow.RecordBatch, ack *engine.Ack) error { rec.Release(); ack.Done(); return nil }
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.handle(message{topic: topics[i%n], payload: payload})
				i++
				if r.rb.Rows() >= 1024 {
					_ = r.flush(emit)
				}
			}
		})
	}
}

// BenchmarkIngest measures MQTT ingest end to end: devsim posts EnOS
// payloads of 1,000 turbines x 10 points through a broker, to the mqtt
// source and, in the same run, to a plain subscriber that only counts
// messages. It reports what each received per second and their ratio
// (source / plain); the source's batches are released as soon as they are
// emitted. Run it with -benchtime=1x (each run lasts SLUICE_BENCH_SECONDS,
// default 5):
//
//	go test ./connectors/mqtt -run '^$' -bench Ingest -benchtime=1x
//
// SLUICE_BENCH_RATE paces the devices (payloads/s, default 0: as fast as
// they can); SLUICE_BENCH_BROKER is the broker (default Mosquitto at
// 127.0.0.1:1883; "embedded" starts one in the process).
func BenchmarkIngest(b *testing.B) {
	for _, qos := range []int{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) { benchIngest(b, qos) })
	}
}

func benchIngest(b *testing.B, qos int) {
	url := "tcp://" + mosquittoAddr
	switch v := os.Getenv("SLUICE_BENCH_BROKER"); v {
	case "":
		mosquitto(b)
	case "embedded":
		url = embedded(b).url
	default:
		url = v
	}
	seconds := envFloat("SLUICE_BENCH_SECONDS", 5)
	rate := envFloat("SLUICE_BENCH_RATE", 0)
	sfx := suffix()
	pk := "bench" + sfx
	filter := "/sys/" + pk + "/+/thing/measurepoint/post"
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds*float64(time.Second))+30*time.Second)
	defer cancel()

	plain, err := devsim.NewCounter(ctx, devsim.Config{URLs: []string{url}, ClientID: "plain-" + sfx}, filter)
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()

	src := buildSource(b, fmt.Sprintf(`
urls: [%s]
client_id: src-%s
clean_session: true
qos: %d
topics: [%q]
schema: {key: asset, fields: {wind_speed: float64, power: float64, rotor_rpm: float64, pitch_angle: float64,
  nacelle_temp: float64, gearbox_temp: float64, generator_temp: float64, ambient_temp: float64, yaw_error: float64, vibration: float64}}
`, url, sfx, qos, filter), engine.BuildContext{})
	var rows atomic.Int64
	r := startEmit(b, src, func(rec arrow.RecordBatch, ack *engine.Ack) error {
		rows.Add(rec.NumRows())
		rec.Release()
		ack.Done()
		return nil
	}, nil)

	sim, err := devsim.New(devsim.Config{URLs: []string{url}, ClientID: "sim-" + sfx, ProductKey: pk, QoS: qos,
		Devices: 1000, Points: 10, Rate: rate, Duration: time.Duration(seconds * float64(time.Second)), Connections: 2, Inflight: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	st, err := sim.Run(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// Let what the broker still holds arrive: wait until neither
	// receiver has moved for 200ms; the rates count until the last move.
	last, lastAt := int64(-1), time.Now()
	for {
		if now := rows.Load() + plain.Count(); now != last {
			last, lastAt = now, time.Now()
		} else if time.Since(lastAt) >= 200*time.Millisecond || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := lastAt.Sub(start)
	b.StopTimer()
	r.stop(b)

	got, base := float64(rows.Load()), float64(plain.Count())
	secs := elapsed.Seconds()
	b.ReportMetric(float64(st.Sent)/st.Elapsed.Seconds(), "offered/s")
	b.ReportMetric(got/secs, "payloads/s")
	b.ReportMetric(10*got/secs, "points/s")
	b.ReportMetric(base/secs, "plain/s")
	if base > 0 {
		b.ReportMetric(got/base, "ratio")
	}
	b.ReportMetric(float64(st.Sent-rows.Load()), "source_missed")
	b.ReportMetric(float64(st.Sent-plain.Count()), "plain_missed")
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}
