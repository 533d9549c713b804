package codec_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
)

// The reference payload: an EnOS post of 10 points, one of them
// {value, quality}, about 300 bytes.
const benchPayload = `{"id":"12345","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":` +
	`{"wind_speed":7.43,"power":1234.56,"rotor_rpm":12.31,"pitch_angle":1.25,"nacelle_temp":31.5,"gearbox_temp":65.21,` +
	`"generator_temp":71.04,"ambient_temp":12.75,"yaw_error":-2.13,"vibration":{"value":2.41,"quality":9}},"time":1700000000000}}`

const benchDecl = `
schema:
  key: asset
  fields: {wind_speed: float64, power: float64, rotor_rpm: float64, pitch_angle: float64, nacelle_temp: float64,
           gearbox_temp: float64, generator_temp: float64, ambient_temp: float64, yaw_error: float64, vibration: float64}
`

// runDecode decodes payload over and over into a builder that is cut into
// records of 1,024 rows, as a source does.
func runDecode(b *testing.B, d codec.Decoder, payload []byte, key string) {
	rb := engine.NewRecordBuilder(memory.NewGoAllocator(), d.Schema())
	defer rb.Release()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(rb, payload, key); err != nil {
			b.Fatal(err)
		}
		if rb.Rows() >= 1024 {
			rb.NewRecord().Release()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/payload")
}

func BenchmarkEnOSDecode(b *testing.B) {
	d, err := codec.NewEnOS(mapping(b, benchDecl), codec.EnOSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	runDecode(b, d, []byte(benchPayload), "T0001")
}

// BenchmarkEnOSParse measures decoding alone, without appending to Arrow.
func BenchmarkEnOSParse(b *testing.B) {
	d, err := codec.NewEnOS(mapping(b, benchDecl), codec.EnOSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p := []byte(benchPayload)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Parse(p, "T0001"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnOSBatch decodes a resume payload of 10 items (one row each).
func BenchmarkEnOSBatch(b *testing.B) {
	d, err := codec.NewEnOS(mapping(b, benchDecl), codec.EnOSOptions{KeyField: "deviceKey"})
	if err != nil {
		b.Fatal(err)
	}
	items := make([]string, 10)
	for i := range items {
		items[i] = fmt.Sprintf(`{"deviceKey":"T%04d","measurepoints":{"wind_speed":7.43,"power":1234.56,"rotor_rpm":12.31,`+
			`"pitch_angle":1.25,"nacelle_temp":31.5,"gearbox_temp":65.21,"generator_temp":71.04,"ambient_temp":12.75,`+
			`"yaw_error":-2.13,"vibration":2.41},"time":%d}`, i+1, 1700000000000+i*1000)
	}
	p := []byte(`{"id":"1","version":"1.0","method":"thing.measurepoint.resume","params":[` + strings.Join(items, ",") + `]}`)
	runDecode(b, d, p, "")
}

func BenchmarkJSONDecode(b *testing.B) {
	m := mapping(b, benchDecl+"mapping: {asset: device, wind_speed: wind.speed, power: power.kw}\n")
	d, err := codec.NewJSON(m, codec.JSONOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p := []byte(`{"time":1700000000000,"device":"T0001","wind":{"speed":7.43,"dir":271.5},"power":{"kw":1234.56},` +
		`"rotor_rpm":12.31,"pitch_angle":1.25,"nacelle_temp":31.5,"gearbox_temp":65.21,"generator_temp":71.04,` +
		`"ambient_temp":12.75,"yaw_error":-2.13,"vibration":2.41,"firmware":"v1.2.3"}`)
	runDecode(b, d, p, "")
}

func BenchmarkCSVDecode(b *testing.B) {
	for _, bc := range []struct{ name, layout, time string }{
		{"unix_ms", "unix_ms", "1700000000000"},
		{"layout", "02 01 2006 15:04", "14 11 2023 22:13"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tf, err := codec.ParseTimeFormat(bc.layout, "")
			if err != nil {
				b.Fatal(err)
			}
			header := []string{"time", "asset", "wind_speed", "power", "rotor_rpm", "pitch_angle", "nacelle_temp",
				"gearbox_temp", "generator_temp", "ambient_temp", "yaw_error", "vibration"}
			d, err := codec.NewCSV(mapping(b, benchDecl), codec.CSVOptions{Header: header, Time: tf})
			if err != nil {
				b.Fatal(err)
			}
			runDecode(b, d, []byte(bc.time+",T0001,7.43,1234.56,12.31,1.25,31.5,65.21,71.04,12.75,-2.13,2.41"), "")
		})
	}
}

func BenchmarkAppendJSONRow(b *testing.B) {
	d, err := codec.NewEnOS(mapping(b, benchDecl), codec.EnOSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rb := engine.NewRecordBuilder(memory.NewGoAllocator(), d.Schema())
	defer rb.Release()
	for i := range 1024 {
		if _, err := d.Decode(rb, []byte(benchPayload), fmt.Sprintf("T%04d", i)); err != nil {
			b.Fatal(err)
		}
	}
	rec := rb.NewRecord()
	defer rec.Release()
	buf := codec.AppendJSONLines(nil, rec)
	b.SetBytes(int64(len(buf)) / 1024)
	b.ReportAllocs()
	row := 0
	for b.Loop() {
		buf = codec.AppendJSONRow(buf[:0], rec, row)
		if row++; row == 1024 {
			row = 0
		}
	}
}
