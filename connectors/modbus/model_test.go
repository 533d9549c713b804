package modbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	mb "github.com/simonvetter/modbus"

	"github.com/sluice-edge/sluice/connectors/modbus"
	"github.com/sluice-edge/sluice/connectors/windfarm"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// TestWriteCheckedAgainstThingModel: with the turbines' thing model known
// to the arbiter, a write is checked after the map's scaling: a register
// whose raw value lies within the point's range but whose scaled value
// does not is answered with exception 0x03 (illegal data value) and
// recorded rejected with the point, the value, the range and the model,
// and the device never gets it; a raw value above the range that scales
// into it reaches the device. A write to a point the model lacks is
// answered 0x03 too.
func TestWriteCheckedAgainstThingModel(t *testing.T) {
	p := newPlant(t)
	cat, err := assets.Parse("models.yaml", []byte(`
models:
  - id: turbine
    points:
      power_limit: {type: float64, unit: kW, min: 0, max: 2000}
      curtail: {type: bool}
assets:
  - {id: T0001, model: turbine}
`))
	if err != nil {
		t.Fatal(err)
	}
	p.arbiter.SetModels(cat)
	srv, c := start(t, modbus.Options{Entries: []modbus.Entry{
		// kW in tens: raw 150 is 1,500 kW, raw 1,500 is 15,000 kW.
		{Table: modbus.HoldingRegisters, Address: 200, Product: p.pk, Asset: "T0001", Set: windfarm.PowerLimitPoint, Scale: 10},
		// kW in tenths: raw 15,000 is 1,500 kW.
		{Table: modbus.HoldingRegisters, Address: 201, Product: p.pk, Asset: "T0001", Set: windfarm.PowerLimitPoint, Scale: 0.1},
		{Table: modbus.HoldingRegisters, Address: 202, Product: p.pk, Asset: "T0001", Set: "power_limt"},
		{Table: modbus.HoldingRegisters, Address: 203, Product: p.pk, Asset: "T0001", Set: windfarm.PowerLimitPoint, Type: modbus.Int16},
		{Table: modbus.Coils, Address: 10, Product: p.pk, Asset: "T0001", Set: "curtail"},
	}, Submitter: p.arbiter})

	rejected := func(t *testing.T, write func() error, reason string) {
		t.Helper()
		if err := write(); !errors.Is(err, mb.ErrIllegalDataValue) {
			t.Fatalf("write: %v, want illegal data value", err)
		}
		recs := p.arbiter.List(control.Filter{Origin: control.OriginThirdParty, Status: command.Rejected})
		if len(recs) == 0 || !strings.Contains(recs[len(recs)-1].Reason, reason) {
			t.Fatalf("rejected records %+v, want the last with %q", recs, reason)
		}
	}
	t.Run("raw within the range, scaled outside it", func(t *testing.T) {
		rejected(t, func() error { return c.WriteRegister(200, 1500) },
			"asset T0001 (thing model turbine): power_limit = 15000 kW is outside the allowed range [0, 2000] kW")
	})
	t.Run("below the range", func(t *testing.T) {
		rejected(t, func() error { return c.WriteRegister(203, 0xffff) }, "power_limit = -1 kW is outside")
	})
	t.Run("a point the model lacks", func(t *testing.T) {
		rejected(t, func() error { return c.WriteRegister(202, 1) }, `no measure point "power_limt" in the model (did you mean "power_limit"?)`)
	})
	if _, ok := p.sim.SetPoints("T0001")[windfarm.PowerLimitPoint]; ok {
		t.Fatal("a rejected power limit reached the device")
	}
	if st := srv.Stats(); st.Rejected != 3 || st.Commands != 0 || st.Exceptions != 3 {
		t.Fatalf("stats %+v", st)
	}

	t.Run("in range once scaled", func(t *testing.T) {
		for _, w := range []struct {
			addr, raw uint16
		}{{200, 150}, {201, 15000}} {
			if err := c.WriteRegister(w.addr, w.raw); err != nil {
				t.Fatalf("write %d to %d: %v", w.raw, w.addr, err)
			}
			if got := lastCommand(t, p.arbiter); got.Status != command.Acked || got.Inputs[windfarm.PowerLimitPoint] != 1500.0 {
				t.Fatalf("command %+v", got)
			}
			if kW := p.sim.SetPoints("T0001")[windfarm.PowerLimitPoint]; kW != 1500 {
				t.Fatalf("device power_limit %v, want 1500", kW)
			}
		}
	})
	t.Run("a coil sets a bool point", func(t *testing.T) {
		if err := c.WriteCoil(10, true); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSinkSetsCheckedAgainstThingModel: in a release with thing models,
// `sluice validate` refuses a map entry whose `set` names a point the
// asset's model lacks, or a text point (a Modbus write carries a number):
// every write of it would be rejected. Assets without a model are not
// checked.
func TestSinkSetsCheckedAgainstThingModel(t *testing.T) {
	cat, err := assets.Parse("models.yaml", []byte(`
models:
  - id: turbine
    points:
      power_limit: {type: float64, unit: kW, min: 0, max: 2000}
      mode: {type: string}
      run: {type: bool}
assets:
  - {id: T0001, model: turbine}
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, doc, want string }{
		{"points of the model", "registers: [{address: 0, asset: T0001, set: power_limit}]\ncoils: [{address: 0, asset: T0001, set: run}]\n", ""},
		{"a point the model lacks", "registers: [{address: 0, asset: T0001, set: power_limt}]\n",
			`site.yaml:1:45: asset T0001 (thing model turbine) has no measure point "power_limt" (did you mean "power_limit"?): every write of it would be rejected`},
		{"a text point", "registers: [{address: 0, asset: T0001, set: mode}]\n",
			`point "mode" of thing model turbine takes text: a Modbus write carries a number`},
		{"an asset without a model", "registers: [{address: 0, asset: T0009, set: anything}]\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := buildSink(t, tc.doc, engine.BuildContext{DryRun: true, Pipeline: "p", Name: "plant", Catalog: cat})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if s != nil {
				if err := s.Close(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
