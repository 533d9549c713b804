package modbus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	mb "github.com/simonvetter/modbus"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

var turbineRows = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64}, {Name: "wind_speed", Type: engine.Float64},
	{Name: "running", Type: engine.Bool}, {Name: "status", Type: engine.String},
}, "time", "asset")

// buildSink parses a modbus sink's YAML and builds it for the input.
func buildSink(t *testing.T, doc string, bc engine.BuildContext) (engine.Sink, error) {
	t.Helper()
	c, ok := engine.Lookup(spec.KindSink, "modbus")
	if !ok {
		t.Fatal("modbus is not registered")
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type")
	if len(errs) > 0 {
		return nil, errs
	}
	return c.Sink(cfg, turbineRows, bc)
}

func TestSinkSpec(t *testing.T) {
	const reg = "registers: [{address: 0, asset: T0001, point: power, type: float32}]\n"
	cases := []struct {
		name, doc, want string
	}{
		{"minimal", reg, ""},
		{"coils and registers", reg + "coils: [{address: 0, asset: T0001, point: running, set: run}]\n", ""},
		{"exposed with allow", "listen: 0.0.0.0:1502\nallow: [10.0.5.20, 10.0.6.0/28, 'fd00::/8']\n" + reg, ""},
		{"empty map", "listen: 127.0.0.1:1502\n", "the map is empty"},
		{"exposed without allow", "listen: 0.0.0.0:1502\n" + reg, "no authentication"},
		{"bad allow", "allow: [10.0.5.300]\n" + reg, "neither an IP address nor a CIDR prefix"},
		{"bad type", "registers: [{address: 0, asset: T1, point: power, type: double}]\n", "type"},
		{"bad word order", "registers: [{address: 0, asset: T1, point: power, type: float32, word_order: middle}]\n", "word_order"},
		{"address out of range", "registers: [{address: 70000, asset: T1, point: power}]\n", "between 0 and 65535"},
		{"zero scale", "registers: [{address: 0, asset: T1, point: power, scale: 0}]\n", "scale must not be 0"},
		{"empty coils list", reg + "coils: []\nunit_id: 0\n", ""},
		{"overlapping registers", "registers: [{address: 0, asset: T1, point: power, type: float32}, {address: 1, asset: T1, point: wind_speed}]\n", "overlaps"},
		{"point not in the input", "registers: [{address: 0, asset: T1, point: torque}]\n", `point "torque" (asset T1) is not a column`},
		{"point of a string column", "registers: [{address: 0, asset: T1, point: status}]\n", "numbers or booleans"},
		{"entry mapping nothing", "registers: [{address: 0, asset: T1}]\n", "maps nothing"},
		{"coil with a type", "coils: [{address: 0, asset: T1, set: run, type: float32}]\n", "type"},
		{"unit id", "unit_id: 300\n" + reg, "unit_id must be between 0 and 247"},
		{"max clients", "max_clients: 0\n" + reg, "max_clients"},
		{"asset column", "asset_column: status2\n" + reg, "string column naming the asset"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := buildSink(t, tc.doc, engine.BuildContext{DryRun: true, Pipeline: "p", Name: "plant"})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), "site.yaml:"):
				t.Errorf("error %v has no location", err)
			}
			if s != nil {
				if err := s.Close(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestSinkServesLatestValues: the rows a modbus sink receives are what
// reads return, the last row of an asset winning; a write goes to the
// edge's arbiter (BuildContext.Commands).
func TestSinkServesLatestValues(t *testing.T) {
	p := newPlant(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	doc := fmt.Sprintf("listen: %s\nproduct_key: %s\nregisters:\n"+
		"  - {address: 0, asset: T0001, point: power, type: float32}\n"+
		"  - {address: 2, asset: T0002, point: power, type: uint32, word_order: low_first, scale: 0.1}\n"+
		"  - {address: 10, asset: T0001, set: power_limit}\n"+
		"coils: [{address: 0, asset: T0002, point: running}]\n", addr, p.pk)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	s, err := buildSink(t, doc, engine.BuildContext{Pipeline: "p", Name: "plant", Commands: p.arbiter, Mem: mem, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	rec := enginetest.Record(mem, turbineRows,
		enginetest.Row{int64(1), "T0001", 100.0, 5.0, true, "ok"},
		enginetest.Row{int64(1), "T0002", 200.0, 6.0, false, "ok"},
		enginetest.Row{int64(2), "T0001", 1500.25, 9.0, true, "ok"},
		enginetest.Row{int64(2), "T0002", 1234.5, nil, true, "ok"},
		enginetest.Row{int64(3), nil, 1.0, 1.0, false, "ok"},
		enginetest.Row{int64(3), "T0999", 1.0, 1.0, false, "ok"},
	)
	if err := s.Write(context.Background(), engine.Batch{Rec: rec}); err != nil {
		t.Fatal(err)
	}
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + addr, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.ReadFloat32(0, mb.HOLDING_REGISTER); err != nil || v != 1500.25 {
		t.Errorf("T0001 power %v, %v", v, err)
	}
	c.SetEncoding(mb.BIG_ENDIAN, mb.LOW_WORD_FIRST)
	if v, err := c.ReadUint32(2, mb.INPUT_REGISTER); err != nil || v != 12345 {
		t.Errorf("T0002 power in tenths %v, %v", v, err)
	}
	if v, err := c.ReadDiscreteInputs(0, 1); err != nil || !v[0] {
		t.Errorf("T0002 running %v, %v", v, err)
	}
	if err := c.WriteRegister(10, 900); err != nil {
		t.Fatal(err)
	}
	got := lastCommand(t, p.arbiter)
	if got.Status != command.Acked || got.Product != p.pk || got.Inputs["power_limit"] != 900.0 {
		t.Errorf("command %+v", got)
	}
	snap := counters.Snapshot()
	for name, want := range map[string]int64{"modbus_reads": 3, "modbus_writes": 1, "commands_submitted": 1, "modbus_exceptions": 0} {
		if snap[name] != want {
			t.Errorf("%s = %d, want %d", name, snap[name], want)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFloat32(0, mb.HOLDING_REGISTER); err == nil {
		t.Error("the server still answers after Close")
	}
}

// TestSinkWithoutArbiter: without a command path, writes are answered
// with exception 0x04 and reads still work.
func TestSinkWithoutArbiter(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s, err := buildSink(t, "listen: "+addr+"\nregisters: [{address: 0, asset: T1, point: power, set: power_limit}]\n",
		engine.BuildContext{Pipeline: "p", Name: "plant"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	c, _ := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + addr, Timeout: 10 * time.Second})
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteRegister(0, 1); !errors.Is(err, mb.ErrServerDeviceFailure) {
		t.Errorf("write: %v, want exception 0x04", err)
	}
	if v, err := c.ReadRegister(0, mb.HOLDING_REGISTER); err != nil || v != 0 {
		t.Errorf("read before any value: %v, %v", v, err)
	}
}
