package pipelines_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/operators/infer/infertest"
	"github.com/sluice-edge/sluice/pipelines"
)

var updateModels = flag.Bool("update-models", false, "rewrite the example models from their generators")

// powerCurveModel is the model file of the power-curve example.
const powerCurveModel = "examples/models/power-curve.onnx"

// The farm the power-curve model is fitted on: fault-free turbines read
// every second for powerCurveHours hours.
const (
	powerCurveTurbines = 24
	powerCurveHours    = 4
	powerCurveSeed     = 20240101
)

// powerCurveSamples returns the one-minute averages (wind speed, pitch,
// ambient temperature) and mean power of every turbine-minute of the
// fault-free farm.
func powerCurveSamples() (x, y []float64) {
	farm := sim.NewFarm(sim.Config{Turbines: powerCurveTurbines, Interval: time.Second, Seed: powerCurveSeed})
	var rd sim.Reading
	for range powerCurveHours * 60 {
		for t := range powerCurveTurbines {
			var wind, pitch, amb, power float64
			c := 0
			for range 60 {
				farm.Next(t, &rd)
				v := rd.Values
				if !(v[sim.WindSpeed] > 0.5 || v[sim.Power] > 0) {
					continue
				}
				wind += v[sim.WindSpeed]
				pitch += v[sim.PitchAngle]
				amb += v[sim.AmbientTemp]
				power += v[sim.Power]
				c++
			}
			if c == 0 {
				continue
			}
			k := float64(c)
			x = append(x, wind/k, pitch/k, amb/k)
			y = append(y, power/k)
		}
	}
	return x, y
}

// TestPowerCurveModelUpToDate: the committed model of the power-curve
// example is what infertest.PowerCurve generates, byte for byte, so it
// cannot go stale. Rewrite it with
// `go test ./pipelines -run TestPowerCurveModelUpToDate -update-models`.
func TestPowerCurveModelUpToDate(t *testing.T) {
	fit := infertest.PowerCurve(powerCurveSamples())
	want := fit.Model.ONNX()
	t.Logf("fitted on %d turbine-minutes, RMSE %.1f kW", fit.Samples, fit.RMSE)
	if fit.RMSE > 20 {
		t.Errorf("RMSE %.1f kW: the model does not fit the farm's power curve", fit.RMSE)
	}
	if *updateModels {
		if err := os.WriteFile(powerCurveModel, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(powerCurveModel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what infertest.PowerCurve generates (%d bytes, want %d): rewrite it with go test ./pipelines -run TestPowerCurveModelUpToDate -update-models", powerCurveModel, len(got), len(want))
	}
}

// TestPowerCurveAnomalyExampleRuns runs the power-curve example on 20
// turbines for 2 hours: every turbine-minute is scored, and the
// power_shortfall alert is raised, only for turbines that were curtailed
// (the sim farm's fault episodes, computed here from the farm itself) in
// every minute from the alert's first window to the one that raised it,
// at least 10 minutes later.
func TestPowerCurveAnomalyExampleRuns(t *testing.T) {
	const turbines, rows = 20, 7200
	dir := t.TempDir()
	out := filepath.Join(dir, "residuals.jsonl")
	env := envOf(map[string]string{"SIM_TURBINES": "20", "SIM_ROWS": "7200", "RESIDUALS_FILE": out})
	defs, errs := pipelines.Load([]string{"examples/power-curve-anomaly.yaml"}, env)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var ps []*pipelines.Pipeline
	stdout := captureStdout(t, func() { ps = runDefs(t, defs) })
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	residuals := readJSONLines(t, data)
	if len(residuals) != turbines*rows/60 {
		t.Fatalf("%d residual rows, want %d", len(residuals), turbines*rows/60)
	}
	if n := counter(ps, "expected", "scored_rows"); n != int64(len(residuals)) {
		t.Fatalf("scored_rows %d, want %d", n, len(residuals))
	}

	// The curtailed minutes of every turbine, from the farm itself.
	farm := sim.NewFarm(sim.Config{Turbines: turbines, Interval: time.Second, Seed: 42, Faults: 1})
	curtailed := map[string]map[int64]bool{} // asset -> minute (ms) -> curtailed in it
	var rd sim.Reading
	for range rows {
		for i := range turbines {
			farm.Next(i, &rd)
			if rd.Fault == sim.Curtailment {
				a := farm.Asset(i)
				if curtailed[a] == nil {
					curtailed[a] = map[int64]bool{}
				}
				curtailed[a][rd.Time/60_000*60_000] = true
			}
		}
	}

	alerts := readJSONLines(t, stdout)
	raised := 0
	for _, a := range alerts {
		if a["state"] != "raised" {
			continue
		}
		raised++
		asset, _ := a["asset"].(string)
		from, err1 := time.Parse(time.RFC3339Nano, a["occur_time"].(string))
		to, err2 := time.Parse(time.RFC3339Nano, a["time"].(string))
		if err1 != nil || err2 != nil || to.Sub(from) < 10*time.Minute {
			t.Fatalf("alert times %v %v: %v", err1, err2, a)
		}
		for m := from; !m.After(to); m = m.Add(time.Minute) {
			if !curtailed[asset][m.UnixMilli()] {
				t.Errorf("alert %v: %s was not curtailed in the minute at %s", a, asset, m)
				break
			}
		}
	}
	if raised == 0 || int64(raised) != counter(ps, "alerts", "raised") {
		t.Fatalf("%d alerts raised on stdout, counter %d:\n%s", raised, counter(ps, "alerts", "raised"), stdout)
	}
	t.Logf("%d alerts raised, %d lines", raised, len(alerts))
}
