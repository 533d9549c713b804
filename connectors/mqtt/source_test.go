package mqtt

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestSourceRoundTrip(t *testing.T) {
	type msg struct {
		topic   string // %s is replaced by the test's random suffix
		payload string
	}
	cases := []struct {
		name   string
		config string
		msgs   []msg
		want   []enginetest.Row
	}{
		{
			name: "enos post and resume",
			config: `
format: enos
topics: ["/sys/pk%[1]s/+/thing/measurepoint/#"]
schema: {time: time, key: asset, fields: {wind_speed: float64, power: float64, q: int64}}
mapping: {q: power.quality}
`,
			msgs: []msg{
				{"/sys/pk%s/WT01/thing/measurepoint/post", `{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"wind_speed":7.5,"power":{"value":1200,"quality":9}},"time":1700000000000}}`},
				{"/sys/pk%s/WT02/thing/measurepoint/resume", `{"id":"2","params":{"measurepoints":{"wind_speed":3},"time":1600000000000}}`},
				{"/sys/pk%s/GW/thing/measurepoint/post/batch", `{"id":"3","params":[{"deviceKey":"WT03","measurepoints":{"power":5},"time":1700000001000},{"deviceKey":"WT04","measurepoints":{"power":6},"time":1700000002000}]}`},
			},
			want: []enginetest.Row{
				{int64(1700000000000), "WT01", 7.5, 1200.0, int64(9), false},
				{int64(1600000000000), "WT02", 3.0, nil, nil, true},
				{int64(1700000001000), "WT03", nil, 5.0, nil, false},
				{int64(1700000002000), "WT04", nil, 6.0, nil, false},
			},
		},
		{
			name: "json with topic fields",
			config: `
format: json
topics: ["plant%[1]s/+/+/telemetry"]
topic_pattern: "plant%[1]s/{site}/{deviceKey}/telemetry"
schema: {time: ts, key: device, fields: {site: string, temp: float64, ok: bool}}
mapping: {temp: data.temp}
`,
			msgs: []msg{
				{"plant%s/north/D1/telemetry", `{"ts":1700000000000,"data":{"temp":21.5},"ok":true}`},
				{"plant%s/south/D2/telemetry", `{"ts":1700000000500,"data":{"temp":-3}}`},
			},
			want: []enginetest.Row{
				{int64(1700000000000), "D1", "north", 21.5, true},
				{int64(1700000000500), "D2", "south", -3.0, nil},
			},
		},
		{
			name: "csv with key from topic fields",
			config: `
format: csv
topics: ["csv%[1]s/#"]
topic_fields: {deviceKey: 1}
columns: [time, power, status]
time_layout: rfc3339
schema: {time: time, key: device, fields: {power: float64, status: string}}
`,
			msgs: []msg{
				{"csv%s/M1", `2024-01-01T00:00:00Z,10.5,run`},
				{"csv%s/M2", `2024-01-01T00:00:01Z,,"stop, manual"`},
			},
			want: []enginetest.Row{
				{int64(1704067200000), "M1", 10.5, "run"},
				{int64(1704067201000), "M2", nil, "stop, manual"},
			},
		},
	}
	for _, b := range brokers(t) {
		for _, version := range []string{"5", "3.1.1"} {
			for _, tc := range cases {
				t.Run(b.name+"/v"+version+"/"+tc.name, func(t *testing.T) {
					sfx := suffix()
					mem := checkedMem(t)
					cfg := fmt.Sprintf(tc.config, sfx) + fmt.Sprintf("urls: [%s]\nversion: %q\nclient_id: src-%s\n", b.url, version, sfx)
					src := buildSource(t, cfg, engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 2}})
					c := newCollector()
					r := start(t, src, c)
					pub := newPublisher(t, b.url, 5)
					for _, m := range tc.msgs {
						pub.publish(fmt.Sprintf(m.topic, sfx), []byte(m.payload))
					}
					got := c.waitRows(t, len(tc.want))
					r.stop(t)
					if !slices.EqualFunc(got, tc.want, rowEqual) {
						t.Errorf("rows:\n got %v\nwant %v", got, tc.want)
					}
					if n := src.c.bad.Load(); n != 0 {
						t.Errorf("bad_payloads = %d, want 0", n)
					}
				})
			}
		}
	}
}

func rowEqual(a, b enginetest.Row) bool {
	return slices.EqualFunc(a, b, func(x, y any) bool { return fmt.Sprint(x) == fmt.Sprint(y) })
}

func TestSourceSchema(t *testing.T) {
	cases := []struct {
		name, config string
		want         string // schema string, or an error substring
		err          bool
	}{
		{"enos adds history", `schema: {key: asset, fields: {power: float64}}`,
			"time:timestamp(time), asset:string(key), power:float64, history:bool", false},
		{"enos history declared", `schema: {key: asset, fields: {backfill: bool, power: float64}}
history_column: backfill`, "time:timestamp(time), asset:string(key), backfill:bool, power:float64", false},
		{"enos without history", `schema: {key: asset, fields: {productKey: string, power: float64}}
history_column: ""`, "time:timestamp(time), asset:string(key), productKey:string, power:float64", false},
		{"history must be bool", `schema: {fields: {history: float64}}`, "must be bool", true},
		{"topic column must be string", `schema: {fields: {productKey: float64}}`, "must be a string", true},
		{"json needs topics", `format: json
schema: {fields: {power: float64}}`, "list the topics", true},
		{"enos key needs a topic field", `topic_fields: {site: 1}
schema: {key: asset, fields: {power: float64}}`, "key_from must name a topic field", true},
		{"bad filter", `topics: ["a/#/b"]
schema: {fields: {power: float64}}`, "# must be the last segment", true},
		{"bad qos", `qos: 2
schema: {fields: {power: float64}}`, "qos must be 0 or 1", true},
		{"csv needs columns", `format: csv
topics: [x]
schema: {fields: {power: float64}}`, "list the names", true},
		{"pattern and fields", `topic_pattern: "/sys/{a}/{b}"
topic_fields: {a: 2}
schema: {fields: {power: float64}}`, "not both", true},
		{"bad pattern", `topic_pattern: "/sys/{a/b"
schema: {fields: {power: float64}}`, "must be {name}", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := tryBuildSource(tc.config, engine.BuildContext{})
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := src.Schema().String(); got != tc.want {
				t.Errorf("schema = %s, want %s", got, tc.want)
			}
		})
	}
}
