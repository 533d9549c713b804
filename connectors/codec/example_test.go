package codec_test

import (
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

func ExampleEnOS() {
	s := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "temp", Type: engine.Float64},
		{Name: "power", Type: engine.Float64},
		{Name: "power_quality", Type: engine.Int64},
	}, "time", "asset")
	m, _ := codec.NewMapping(s, map[string]string{"power": "Power", "power_quality": "Power.quality"})
	dec, _ := codec.NewEnOS(m, codec.EnOSOptions{})

	rb := engine.NewRecordBuilder(memory.DefaultAllocator, s)
	defer rb.Release()
	payloads := []string{
		`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1.02,"Power":{"value":1,"quality":9}},"time":1700000000000}}`,
		`{"id":"2","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":"warm"},"time":1700000001000}}`,
		`{"id":"3","version":"1.0","method":"thing.measurepoint.resume","params":[{"measurepoints":{"temp":0.5},"time":1699999990000}]}`,
	}
	for _, p := range payloads {
		// The device key comes from the MQTT topic
		// /sys/{productKey}/{deviceKey}/thing/measurepoint/post.
		if _, err := dec.Decode(rb, []byte(p), "INV001"); err != nil {
			fmt.Println("error:", err)
		}
	}
	rec := rb.NewRecord()
	defer rec.Release()
	os.Stdout.Write(codec.AppendJSONLines(nil, rec))
	// Output:
	// error: offset 95: point "temp": float64 column got a string
	// {"time":"2023-11-14T22:13:20.000Z","asset":"INV001","temp":1.02,"power":1,"power_quality":9}
	// {"time":"2023-11-14T22:13:10.000Z","asset":"INV001","temp":0.5}
}

func ExampleCSV() {
	// A source declares the shared schema and time fields in its spec...
	sourceSpec := spec.Spec{Name: "example", Fields: append(codec.SchemaFields(), codec.TimeFields()...)}
	var node yaml.Node
	_ = yaml.Unmarshal([]byte(`
schema: {key: asset, fields: {power: float64, wind_speed: float64}}
mapping: {time: Date/Time, power: ActivePower, wind_speed: "Wind Speed (m/s)"}
time_layout: "02 01 2006 15:04"
`), &node)
	cfg, errs := sourceSpec.Parse("site.yaml", &node)
	if len(errs) > 0 {
		fmt.Println(errs)
		return
	}
	// ...and reads them back with ParseMapping and ParseTimeFormatConfig.
	m, _ := codec.ParseMapping(cfg)
	tf, _ := codec.ParseTimeFormatConfig(cfg)
	header, _ := codec.ParseCSVHeader([]byte("Date/Time,ActivePower,Wind Speed (m/s),Wind Direction"), ',')
	dec, err := codec.NewCSV(m, codec.CSVOptions{Header: header, Time: tf})
	if err != nil {
		fmt.Println(err)
		return
	}
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, m.Schema)
	defer rb.Release()
	for _, line := range []string{
		"01 01 2018 00:00,380.0477905,5.31133604,259.9949036",
		"01 01 2018 00:10,,5.672166824,268.6411133",
	} {
		if _, err := dec.Decode(rb, []byte(line), "T1"); err != nil {
			fmt.Println("error:", err)
		}
	}
	rec := rb.NewRecord()
	defer rec.Release()
	fmt.Println(m.Schema)
	os.Stdout.Write(codec.AppendJSONLines(nil, rec))
	// Output:
	// time:timestamp(time), asset:string(key), power:float64, wind_speed:float64
	// {"time":"2018-01-01T00:00:00.000Z","asset":"T1","power":380.0477905,"wind_speed":5.31133604}
	// {"time":"2018-01-01T00:10:00.000Z","asset":"T1","wind_speed":5.672166824}
}
