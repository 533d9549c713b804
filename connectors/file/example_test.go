package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// The file source replays a SCADA export: one CSV line per row, a day-first
// time layout, and a fixed key since the file holds one turbine.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "t1.csv"), []byte(
		"Date/Time,ActivePower,Wind Speed (m/s),Wind Direction\n"+
			"01 01 2018 00:00,380.0477905,5.31133604,259.9949036\n"+
			"01 01 2018 00:10,n/a,5.672166824,268.6411133\n"+
			"01 01 2018 00:20,306.3765869,5.216036797,272.5647888\n"), 0o644)

	var node yaml.Node
	_ = yaml.Unmarshal([]byte(`
type: file
path: t1.csv
format: csv
time_layout: "02 01 2006 15:04"
key: T1
schema: {key: asset, fields: {power: float64, wind_speed: float64}}
mapping: {time: Date/Time, power: ActivePower, wind_speed: "Wind Speed (m/s)"}
`), &node)
	c, _ := engine.Lookup(spec.KindSource, "file")
	cfg, errs := c.Spec.Parse("site.yaml", &node, "type")
	if len(errs) > 0 {
		fmt.Println(errs)
		return
	}
	counters := engine.NewCounters()
	src, err := c.Source(cfg, engine.BuildContext{Dir: dir, Counters: counters})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = src.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
		defer rec.Release()
		os.Stdout.Write(codec.AppendJSONLines(nil, rec))
		return nil
	})
	fmt.Println("bad lines:", counters.Snapshot()["bad_lines"])
	// Output:
	// {"time":"2018-01-01T00:00:00.000Z","asset":"T1","power":380.0477905,"wind_speed":5.31133604}
	// {"time":"2018-01-01T00:20:00.000Z","asset":"T1","power":306.3765869,"wind_speed":5.216036797}
	// bad lines: 1
}
