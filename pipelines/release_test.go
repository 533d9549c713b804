package pipelines_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/pipelines"
)

// writeRelease writes files (path relative to the release -> content) into
// a new release directory.
func writeRelease(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const releaseModels = `models:
  - id: turbine
    points:
      power: {type: float64, min: 0, max: 3000}
      wind_speed: {type: float64, min: 0, max: 60}
    attributes:
      rated_kw: {type: float64, default: 2000}
`

const releaseAssets = `assets:
  - {id: WT-1, model: turbine}
  - {id: WT-2, model: turbine, attributes: {rated_kw: 2500}}
`

const releaseRules = `model: turbine
rules:
  - name: over_rated
    expr: power > attr.rated_kw
    for: 1m
    severity: major
  - name: calm
    expr: wind_speed < 1
`

// releasePipeline reads CSV through the turbine model, routes values out
// of range, includes the turbine rule set and writes to ${OUT_DIR}.
const releasePipeline = `name: farm
sources:
  scada:
    type: file
    path: ../data/scada.csv
    format: csv
    key: WT-1
    resume: false
    schema: {key: asset, model: turbine, ranges: route}
steps:
  alerts:
    type: alert
    input: scada
    include: [turbine]
sinks:
  rows: {type: file, input: scada, path: "${OUT_DIR}/rows.jsonl"}
  rejected: {type: file, input: scada.errors, path: "${OUT_DIR}/rejected.jsonl"}
  raised: {type: file, input: alerts, path: "${OUT_DIR}/alerts.jsonl"}
`

const releaseConfig = `log_level: debug
vars:
  OUT_DIR: out
  API_TOKEN: {env: RELEASE_TEST_TOKEN}
`

func validRelease() map[string]string {
	return map[string]string{
		"models/turbine.yaml":  releaseModels,
		"models/assets.json":   `{"assets": [{"id": "WT-1", "model": "turbine"}, {"id": "WT-2", "model": "turbine", "attributes": {"rated_kw": 2500}}]}`,
		"rules/turbine.yaml":   releaseRules,
		"config/edge.yaml":     releaseConfig,
		"pipelines/farm.yaml":  releasePipeline,
		"ml/anomaly.onnx":      "not really a model",
		"ml/sub/labels.txt":    "a\nb\n",
		"data/scada.csv":       "time,power,wind_speed\n1717200000000,1000,8\n",
		"pipelines/README.txt": "ignored",
	}
}

func env(vars map[string]string) pipelines.LookupEnv {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestLoadReleaseValid(t *testing.T) {
	dir := writeRelease(t, validRelease())
	secret := fmt.Sprintf("tok-%d-s3cr3t", os.Getpid())
	r, errs := pipelines.LoadRelease(dir, env(map[string]string{"RELEASE_TEST_TOKEN": secret}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(r.Defs) != 1 || r.Defs[0].Name != "farm" || r.Defs[0].Release != r {
		t.Fatalf("defs %+v", r.Defs)
	}
	if r.Catalog == nil || len(r.Catalog.Models) != 1 || len(r.Catalog.Assets) != 2 {
		t.Fatalf("catalog %+v", r.Catalog)
	}
	if a, _ := r.Catalog.Asset("WT-2"); a.Attrs["rated_kw"] != 2500.0 {
		t.Errorf("WT-2 attributes %v", a.Attrs)
	}
	if rs := r.RuleSets["turbine"]; rs == nil || rs.Model != "turbine" || len(rs.Rules) != 2 || rs.File != "rules/turbine.yaml" {
		t.Errorf("rule sets %+v", r.RuleSets)
	}
	s := r.Settings
	if s.LogLevel != "debug" || s.Vars["OUT_DIR"] != "out" || s.Vars["API_TOKEN"] != secret || strings.Join(s.Secrets, ",") != "API_TOKEN" {
		t.Errorf("settings %+v", s)
	}
	if got := redact.String("token is " + secret); strings.Contains(got, secret) {
		t.Errorf("the secret from the environment is not masked: %s", got)
	}
	if got := fmt.Sprint(r.ML); got != "[{ml/anomaly.onnx 18} {ml/sub/labels.txt 4}]" {
		t.Errorf("ml %s", got)
	}
	// The sink path came from the release's vars.
	for _, c := range r.Defs[0].Sinks {
		if c.Name == "rows" && c.Config.String("path") != "out/rows.jsonl" {
			t.Errorf("rows sink path %q", c.Config.String("path"))
		}
	}
}

func TestLoadReleaseErrors(t *testing.T) {
	tests := []struct {
		name    string
		change  map[string]string // files replaced ("" removes)
		wantErr []string          // each must be in the errors, in this order
	}{
		{
			name:    "model defined in two files",
			change:  map[string]string{"models/zz.yaml": "models:\n  - id: turbine\n"},
			wantErr: []string{`models/zz.yaml:2:9: model "turbine" declared twice (also at models/turbine.yaml:2:9)`},
		},
		{
			name:    "asset defined in two files",
			change:  map[string]string{"models/more.yaml": "assets:\n  - {id: WT-2, model: turbine}\n"},
			wantErr: []string{`models/more.yaml:2:10: asset "WT-2" declared twice (also at models/assets.json:1:56)`},
		},
		{
			name:    "bad expression in a rule set",
			change:  map[string]string{"rules/turbine.yaml": "rules:\n  - name: hot\n    expr: power >> 3\n"},
			wantErr: []string{`rules/turbine.yaml:3:`},
		},
		{
			name:    "rule reading a point the model lacks",
			change:  map[string]string{"rules/turbine.yaml": "model: turbine\nrules:\n  - name: hot\n    expr: gearbox_temp > 90\n"},
			wantErr: []string{`rules/turbine.yaml:4:11: field "expr": unknown name gearbox_temp`},
		},
		{
			name: "model changed under a rule set",
			change: map[string]string{"models/turbine.yaml": strings.Replace(releaseModels,
				"      wind_speed: {type: float64, min: 0, max: 60}\n", "", 1)},
			wantErr: []string{`rules/turbine.yaml:8:11: field "expr": unknown name wind_speed`},
		},
		{
			name:    "include of an unknown set",
			change:  map[string]string{"pipelines/farm.yaml": strings.Replace(releasePipeline, "include: [turbine]", "include: [turbines]", 1)},
			wantErr: []string{`pipelines/farm.yaml:14:14: include: no rule set "turbines" in the release (did you mean turbine?) (rule sets: turbine)`},
		},
		{
			name:    "duplicate rule name across the step and a set",
			change:  map[string]string{"pipelines/farm.yaml": strings.Replace(releasePipeline, "include: [turbine]", "include: [turbine]\n    rules: [{name: calm, expr: power < 0}]", 1)},
			wantErr: []string{`rules/turbine.yaml:7:11: rule "calm" declared twice (also at pipelines/farm.yaml:15:20)`},
		},
		{
			name:    "clear-text secret in vars",
			change:  map[string]string{"config/edge.yaml": "vars:\n  OUT_DIR: out\n  DB_PASSWORD: hunter2\n  API_TOKEN: {env: RELEASE_TEST_TOKEN}\n"},
			wantErr: []string{`config/edge.yaml:3:16: variable DB_PASSWORD names a secret: a release never carries one in clear text`},
		},
		{
			name:    "URL with a password in vars",
			change:  map[string]string{"config/edge.yaml": "vars:\n  OUT_DIR: out\n  SINK: nats://u:pw@broker:4222\n"},
			wantErr: []string{`config/edge.yaml:3:9: variable SINK holds a URL with a password`},
		},
		{
			name:    "URL url.Parse refuses, with a password in vars",
			change:  map[string]string{"config/edge.yaml": "vars:\n  OUT_DIR: out\n  SINK: nats://bob:p#ss@broker:4222\n"},
			wantErr: []string{`config/edge.yaml:3:9: variable SINK holds a URL with a password`},
		},
		{
			name:    "secret file that is part of the release",
			change:  map[string]string{"config/edge.yaml": "vars:\n  OUT_DIR: out\n  KEY: {file: secrets/key.pem}\n"},
			wantErr: []string{`config/edge.yaml:3:8: variable KEY: file "secrets/key.pem" must be an absolute path on the edge`},
		},
		{
			name:    "variable set in two files",
			change:  map[string]string{"config/more.yml": "log_level: warn\nvars: {OUT_DIR: elsewhere}\n"},
			wantErr: []string{`config/more.yml:1:12: log_level is also set at config/edge.yaml:1:12`, `config/more.yml:2:8: variable OUT_DIR is also set at config/edge.yaml:3:3`},
		},
		{
			name:    "secret from an unset environment variable",
			change:  map[string]string{"config/edge.yaml": "vars:\n  OUT_DIR: out\n  API_TOKEN: {env: RELEASE_TEST_UNSET}\n"},
			wantErr: []string{`config/edge.yaml:3:14: variable API_TOKEN: environment variable RELEASE_TEST_UNSET is not set`},
		},
		{
			name:    "no pipelines",
			change:  map[string]string{"pipelines/farm.yaml": ""},
			wantErr: []string{`pipelines:0:0: the release holds no pipelines`},
		},
		{
			name:    "schema model unknown",
			change:  map[string]string{"pipelines/farm.yaml": strings.Replace(releasePipeline, "model: turbine,", "model: turbin,", 1)},
			wantErr: []string{`pipelines/farm.yaml:9:33: model: the release has no model "turbin" (models: turbine)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := validRelease()
			for k, v := range tc.change {
				if v == "" {
					delete(files, k)
				} else {
					files[k] = v
				}
			}
			dir := writeRelease(t, files)
			_, errs := pipelines.LoadRelease(dir, env(map[string]string{"RELEASE_TEST_TOKEN": "x"}))
			if len(errs) != len(tc.wantErr) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.wantErr), errs)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.wantErr[i]) {
					t.Errorf("error %d:\n got %s\nwant %s", i, e, tc.wantErr[i])
				}
			}
		})
	}
}

// TestReleaseRangeRouting runs a release whose source takes its schema
// from a model and routes values out of range: those rows reach
// scada.errors with the point, value and bounds, and are counted.
func TestReleaseRangeRouting(t *testing.T) {
	files := validRelease()
	files["data/scada.csv"] = "time,power,wind_speed\n" +
		"1717200000000,1000,8\n" +
		"1717200001000,3500,8\n" + // power above 3000
		"1717200002000,2600,-2\n" + // wind below 0
		"1717200003000,2600,9\n" + // over rated (2000): alert after 1m
		"1717200070000,2700,9\n"
	dir := writeRelease(t, files)
	r, errs := pipelines.LoadRelease(dir, env(map[string]string{"RELEASE_TEST_TOKEN": "x", "OUT_DIR": "ignored: vars come first"}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// Sinks write relative to the pipeline file: out/ under pipelines/.
	out := filepath.Join(dir, "pipelines", "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	ps, errs := pipelines.BuildAll(r.Defs, pipelines.Options{DataDir: filepath.Join(dir, "data-dir")})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := pipelines.RunAll(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []string {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	if rows := read("rows.jsonl"); len(rows) != 3 {
		t.Errorf("rows passed: %d, want 3:\n%s", len(rows), strings.Join(rows, "\n"))
	}
	rejected := read("rejected.jsonl")
	want := []string{
		"power: value 3500 is outside the range [0, 3000] of point turbine.power",
		"wind_speed: value -2 is outside the range [0, 60] of point turbine.wind_speed",
	}
	if len(rejected) != len(want) {
		t.Fatalf("rejected %d rows, want %d:\n%s", len(rejected), len(want), strings.Join(rejected, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(rejected[i], w) {
			t.Errorf("rejected row %d: %s\nwant the reason %q", i, rejected[i], w)
		}
	}
	if alerts := read("alerts.jsonl"); len(alerts) != 1 || !strings.Contains(alerts[0], `"over_rated"`) {
		t.Errorf("alerts:\n%s", strings.Join(alerts, "\n"))
	}
	for _, b := range ps[0].Components {
		if b.Def.Name == "scada" {
			if n := b.Counters.Snapshot()["value_range_rows"]; n != 2 {
				t.Errorf("value_range_rows = %d, want 2", n)
			}
		}
	}
}

func BenchmarkLoadRelease(b *testing.B) {
	files := validRelease()
	delete(files, "pipelines/farm.yaml")
	for i := range 10 {
		name := fmt.Sprintf("farm%02d", i)
		p := strings.Replace(releasePipeline, "name: farm", "name: "+name, 1)
		files["pipelines/"+name+".yaml"] = strings.ReplaceAll(p, "${OUT_DIR}/", "${OUT_DIR}/"+name+"-")
	}
	dir := writeRelease(b, files)
	e := env(map[string]string{"RELEASE_TEST_TOKEN": "x"})
	b.ReportAllocs()
	for b.Loop() {
		r, errs := pipelines.LoadRelease(dir, e)
		if len(errs) > 0 || len(r.Defs) != 10 {
			b.Fatal(errs)
		}
	}
}
