package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// turbineModels is the thing model the set-point checks are tested with.
const turbineModels = `
models:
  - id: turbine
    points:
      power_limit: {type: float64, unit: kW, min: 0, max: 2000}
      pitch: {type: float64, unit: "°", max: 90}
      temp_floor: {type: float64, unit: "°C", min: -40}
      stages: {type: int64, min: 1, max: 4}
      yaw_mode: {type: string}
      curtail: {type: bool}
assets:
  - {id: WT-001, model: turbine}
`

func turbineCatalog(t *testing.T) *assets.Catalog {
	t.Helper()
	c, err := assets.Parse("models.yaml", []byte(turbineModels))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSetPointsCheckedAgainstThingModel: a set-point command for an asset
// whose thing model is known is rejected (recorded, audited, with a
// reason naming the point, the value, the allowed range and the model)
// when it sets a point the model lacks, a value of the wrong type, a
// value that is not a finite number, or one outside the point's range;
// the others are queued, saying the values were checked. Assets without
// a model and service invocations are not checked.
func TestSetPointsCheckedAgainstThingModel(t *testing.T) {
	f := newFixture(t, false) // the device is offline: accepted commands stay queued
	f.a.SetModels(turbineCatalog(t))
	ctx := context.Background()
	cases := []struct {
		name    string
		asset   string
		service string
		inputs  map[string]any
		reason  string // "" when accepted
	}{
		{"in range", "WT-001", "", map[string]any{"power_limit": 1500.0}, ""},
		{"on the bounds", "WT-001", "", map[string]any{"power_limit": 0.0, "stages": 4.0}, ""},
		{"typo: ten times the limit", "WT-001", "", map[string]any{"power_limit": 15000.0},
			"asset WT-001 (thing model turbine): power_limit = 15000 kW is outside the allowed range [0, 2000] kW"},
		{"below min", "WT-001", "", map[string]any{"power_limit": -1.0}, "power_limit = -1 kW is outside the allowed range [0, 2000] kW"},
		{"above a max without min", "WT-001", "", map[string]any{"pitch": 91.0}, "pitch = 91 ° is outside the allowed range (at most 90 °)"},
		{"below a min without max", "WT-001", "", map[string]any{"temp_floor": -41.0}, "temp_floor = -41 °C is outside the allowed range (at least -40 °C)"},
		{"an int input", "WT-001", "", map[string]any{"power_limit": 2001}, "power_limit = 2001 kW is outside"},
		{"a JSON number", "WT-001", "", map[string]any{"power_limit": json.Number("2e4")}, "power_limit = 2e4 kW is outside"},
		{"NaN", "WT-001", "", map[string]any{"power_limit": math.NaN()}, "power_limit = NaN is not a finite number"},
		{"+Inf", "WT-001", "", map[string]any{"power_limit": math.Inf(1)}, "power_limit = +Inf is not a finite number"},
		{"-Inf", "WT-001", "", map[string]any{"power_limit": math.Inf(-1)}, "power_limit = -Inf is not a finite number"},
		{"string to a float point", "WT-001", "", map[string]any{"power_limit": "1500"}, `power_limit = "1500": the point takes a number (kW), not text`},
		{"bool to a float point", "WT-001", "", map[string]any{"power_limit": true}, "power_limit = true: the point takes a number (kW), not true or false"},
		{"unknown point", "WT-001", "", map[string]any{"power_limt": 1500.0},
			`no measure point "power_limt" in the model (did you mean "power_limit"?) (points: curtail, pitch, power_limit, stages, temp_floor, yaw_mode)`},
		{"fraction to an int point", "WT-001", "", map[string]any{"stages": 2.5}, "stages = 2.5: the point takes a whole number"},
		{"int point out of range", "WT-001", "", map[string]any{"stages": json.Number("5")}, "stages = 5 is outside the allowed range [1, 4]"},
		{"int point", "WT-001", "", map[string]any{"stages": json.Number("3")}, ""},
		{"bool point", "WT-001", "", map[string]any{"curtail": true}, ""},
		{"bool point as a coil's 1", "WT-001", "", map[string]any{"curtail": 1.0}, ""},
		{"bool point given 2", "WT-001", "", map[string]any{"curtail": 2.0}, "curtail = 2: the point takes true or false (or 1 or 0)"},
		{"bool point given text", "WT-001", "", map[string]any{"curtail": "on"}, `curtail = "on": the point takes true or false`},
		{"string point", "WT-001", "", map[string]any{"yaw_mode": "auto"}, ""},
		{"number to a string point", "WT-001", "", map[string]any{"yaw_mode": 5.0}, "yaw_mode = 5: the point takes text, not a number"},
		{"one bad point rejects the command", "WT-001", "", map[string]any{"pitch": 10.0, "power_limit": 9999.0},
			"asset WT-001 (thing model turbine): power_limit = 9999 kW is outside"},
		{"every bad point is named", "WT-001", "", map[string]any{"pitch": 100.0, "power_limit": 9999.0},
			"pitch = 100 ° is outside the allowed range (at most 90 °); power_limit = 9999 kW is outside"},
		{"a reason explains 8 points and counts the others", "WT-001", "", tenUnknown(), `no measure point "x7" in the model (points: curtail, pitch, power_limit, stages, temp_floor, yaw_mode); and 2 more points refused`},
		{"asset without a model", "WT-999", "", map[string]any{"power_limit": 15000.0}, ""},
		{"service invocation", "WT-001", "reset", map[string]any{"power_limit": 15000.0}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := f.a.Submit(ctx, control.Command{Product: "pk", Asset: tc.asset, Service: tc.service, Origin: "local:hmi", Inputs: tc.inputs})
			if tc.reason == "" {
				if err != nil || rec.Status != command.Queued {
					t.Fatalf("%s %v, want queued", rec.Status, err)
				}
				return
			}
			if !errors.Is(err, control.ErrRejected) || !errors.Is(err, control.ErrBadSetPoint) {
				t.Fatalf("err %v, want ErrRejected and ErrBadSetPoint", err)
			}
			if rec.Status != command.Rejected || !strings.Contains(rec.Reason, tc.reason) {
				t.Fatalf("%s %q, want rejected with %q", rec.Status, rec.Reason, tc.reason)
			}
			audit := f.a.Audit(control.Filter{ID: rec.ID})
			if n := len(audit); n == 0 || audit[n-1].To != command.Rejected || audit[n-1].Reason != rec.Reason {
				t.Fatalf("audit %+v", audit)
			}
		})
	}
	if got := f.dev.received(); len(got) != 0 {
		t.Fatalf("the device received %v", got)
	}

	t.Run("the queued reasons say what was checked", func(t *testing.T) {
		rec, _ := f.a.Submit(ctx, control.Command{Product: "pk", Asset: "WT-001", Origin: "local:hmi", Inputs: map[string]any{"pitch": 5.0}})
		if !strings.Contains(rec.Reason, "values within thing model turbine") {
			t.Fatalf("reason %q", rec.Reason)
		}
		rec, _ = f.a.Submit(ctx, control.Command{Product: "pk", Asset: "WT-999", Origin: "local:hmi", Inputs: map[string]any{"pitch": 5.0}})
		if !strings.Contains(rec.Reason, "asset WT-999 has no thing model: values not checked") {
			t.Fatalf("reason %q", rec.Reason)
		}
	})

	t.Run("without models, nothing is checked", func(t *testing.T) {
		f.a.SetModels(nil)
		defer f.a.SetModels(turbineCatalog(t))
		rec, err := f.a.Submit(ctx, control.Command{Product: "pk", Asset: "WT-001", Origin: "local:hmi", Inputs: map[string]any{"power_limit": 15000.0}})
		if err != nil || rec.Status != command.Queued || strings.Contains(rec.Reason, "model") {
			t.Fatalf("%s %q %v", rec.Status, rec.Reason, err)
		}
		var none *assets.Catalog // a release without models
		f.a.SetModels(none)
		if rec, err := f.a.Submit(ctx, control.Command{Product: "pk", Asset: "WT-001", Origin: "local:hmi", Inputs: map[string]any{"power_limit": 15000.0}}); err != nil {
			t.Fatalf("%s %v", rec.Status, err)
		}
	})
}

// TestNonFiniteRecordedAcrossRestart: a NaN set-point, which the log's
// JSON cannot hold, is recorded rejected with the value as "NaN", and its
// record and audit are read back after a restart; the caller's inputs are
// left alone.
func TestNonFiniteRecordedAcrossRestart(t *testing.T) {
	f := newFixture(t, false)
	in := map[string]any{"power_limit": math.NaN()}
	rec, err := f.a.Submit(context.Background(), control.Command{Product: "pk", Asset: "WT-001", Origin: "rule:opt", Inputs: in})
	if !errors.Is(err, control.ErrBadSetPoint) || rec.Status != command.Rejected || rec.Inputs["power_limit"] != "NaN" {
		t.Fatalf("%+v %v", rec, err)
	}
	if v, ok := in["power_limit"].(float64); !ok || !math.IsNaN(v) {
		t.Fatalf("the caller's inputs changed: %v", in)
	}
	if err := f.a.Close(); err != nil {
		t.Fatal(err)
	}
	a := open(t, f.dir, f.clock, f.dev)
	defer a.Close()
	got, ok := a.Get(rec.ID)
	if !ok || got.Status != command.Rejected || got.Reason != rec.Reason || got.Inputs["power_limit"] != "NaN" {
		t.Fatalf("after a restart: %+v", got)
	}
	if audit := a.Audit(control.Filter{ID: rec.ID}); len(audit) == 0 || audit[len(audit)-1].To != command.Rejected {
		t.Fatalf("audit after a restart: %+v", audit)
	}
}

// tenUnknown sets ten points no model declares.
func tenUnknown() map[string]any {
	in := map[string]any{}
	for i := range 10 {
		in[fmt.Sprintf("x%d", i)] = 1.0
	}
	return in
}
