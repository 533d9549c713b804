package pipelines_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/operators/infer"
	"github.com/sluice-edge/sluice/operators/infer/infertest"
	"github.com/sluice-edge/sluice/pipelines"
)

// writeFiles writes files (path relative to dir: content) into dir.
func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReleaseModelPaths: an infer step of a release finds its model next
// to the pipeline file or from the release's root, and every model that
// is not a loadable file of the release, or does not fit the stream, is
// refused by the release's dry run, located at the step's model field.
func TestReleaseModelPaths(t *testing.T) {
	outside := t.TempDir()
	good := infertest.NewMLP(1, "Relu", true, 2, 4, 1).ONNX()
	if err := os.WriteFile(filepath.Join(outside, "m.onnx"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	pipeline := func(model string) []byte {
		return []byte(`sources:
  feed: {type: sim, turbines: 2, rows: 1, resume: false}
steps:
  scored:
    type: infer
    input: feed
    model: ` + model + `
    features: [wind_speed, power]
sinks:
  out: {type: discard, input: scored}
`)
	}
	for _, tc := range []struct {
		name, model string
		want        string // "line:col: message", "" for no error
	}{
		{"from the release root", "ml/m.onnx", ""},
		{"from the pipeline file", "../ml/m.onnx", ""},
		{"next to the pipeline file", "here.onnx", ""},
		{"nested", "ml/v2/m.onnx", ""},
		{"leaves the release", "../../m.onnx", "7:12: the path leaves the release"},
		{"leaves the release through ml", "ml/../../../m.onnx", "7:12: the path leaves the release"},
		{"absolute", filepath.Join(outside, "m.onnx"), "7:12: an absolute path names a file outside the release"},
		{"symbolic link out", "ml/link.onnx", "7:12: ml/link.onnx: path escapes from parent"},
		{"missing", "ml/none.onnx", "7:12: no such file in the release (looked for pipelines/ml/none.onnx and ml/none.onnx)"},
		{"directory", "ml/v2", "7:12: ml/v2: not a regular file"},
		{"does not load", "ml/bad.onnx", "7:12: model ml/bad.onnx: not an ONNX model"},
		{"input does not fit the stream", "ml/three.onnx", "8:15: 2 features listed, the model takes 3"},
		{"fails the test inference", "ml/nan-shape.onnx", "7:12: model ml/nan-shape.onnx: test inference on a row of zeros"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string][]byte{
				"pipelines/p.yaml":    pipeline(tc.model),
				"pipelines/here.onnx": good,
				"ml/m.onnx":           good,
				"ml/v2/m.onnx":        good,
				"ml/bad.onnx":         []byte("not a model"),
				"ml/three.onnx":       infertest.NewMLP(1, "Relu", true, 3, 1).ONNX(),
				"ml/nan-shape.onnx":   mismatchedModel(),
			})
			if err := os.Symlink(filepath.Join(outside, "m.onnx"), filepath.Join(dir, "ml", "link.onnx")); err != nil {
				t.Fatal(err)
			}
			_, errs := pipelines.LoadRelease(dir, func(string) (string, bool) { return "", false })
			if tc.want == "" {
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs)
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("accepted, want %q", tc.want)
			}
			msg := errs.Error()
			pos, want, _ := strings.Cut(tc.want, ": ")
			if !strings.HasPrefix(msg, "pipelines/p.yaml:"+pos+": ") || !strings.Contains(msg, want) {
				t.Errorf("error %q is not %q at pipelines/p.yaml:%s", msg, want, pos)
			}
		})
	}
}

// mismatchedModel is a Gemm graph whose weights have 3 rows for an input
// of 2 features: it loads, but its test inference fails.
func mismatchedModel() []byte {
	f := onnx.TensorProto_FLOAT
	return infertest.ModelBytes(&onnx.GraphProto{Name: "mismatched",
		Input:       []*onnx.ValueInfoProto{infertest.ValueInfo("x", f, "batch", 2)},
		Output:      []*onnx.ValueInfoProto{infertest.ValueInfo("y", f, "batch", 1)},
		Initializer: []*onnx.TensorProto{infertest.FloatTensor("w", []float32{1, 2, 3}, 3, 1), infertest.FloatTensor("b", []float32{0}, 1)},
		Node:        []*onnx.NodeProto{infertest.Node("Gemm", "dense", []string{"x", "w", "b"}, []string{"y"})},
	}, 13)
}

// modelSwapPipeline scores the readings of devices posting to Mosquitto
// with the model ml/power.onnx and writes them to one file.
const modelSwapPipeline = `
name: scoring
batch: {size: 256, linger: 5ms}
sources:
  feed: {type: mqtt, urls: ["tcp://127.0.0.1:1883"], client_id: "{{CLIENT}}", topics: ["/sys/{{PRODUCT}}/+/thing/measurepoint/post"], qos: 1, format: enos, schema: {key: asset, fields: {wind_speed: float64, power: float64}}}
steps:
  scored:
    type: infer
    input: feed
    model: ml/power.onnx
    features: [wind_speed, power]
    outputs: [expected]
sinks:
  out: {type: file, input: scored, path: "{{OUT}}"}
`

// TestModelSwapUnderLoad applies, through the edge agent, a release that
// changes only the model file of an infer step (the same YAML) while 1,000
// devices post readings: the switch rebuilds the step (the model's digest
// is part of its fingerprint) and keeps the source and the sink running.
// Every reading is written once, scored by exactly one model — the one its
// model_version column names, as its value shows — and in the file's
// order the version changes once, from v1 to v2. A release whose model
// does not load is then rejected with the reason and v2 keeps running; a
// release with the same files keeps the pipeline untouched.
func TestModelSwapUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("model swap under load")
	}
	needMosquitto(t)
	const devices = 1000
	sfx := outboundtest.Suffix()
	product := "swap" + sfx
	dir := t.TempDir()
	out := filepath.Join(dir, "scored.jsonl")
	// Two MLPs of expected power: v1 and v2 give different values.
	mlps := map[int]*infertest.MLP{1: infertest.NewMLP(11, "Tanh", true, 2, 8, 1), 2: infertest.NewMLP(12, "Tanh", true, 2, 8, 1)}
	models := map[int][]byte{1: mlps[1].ONNX(), 2: mlps[2].ONNX(), 3: []byte("truncated")}
	models[4] = models[2]
	versionOf := map[string]int{infer.Digest(models[1]): 1, infer.Digest(models[2]): 2}
	yaml := strings.NewReplacer("{{CLIENT}}", "swap-"+sfx, "{{PRODUCT}}", product, "{{OUT}}", out).Replace(modelSwapPipeline)
	pub, key, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	build := func(version int) string {
		rd := filepath.Join(dir, fmt.Sprintf("v%d", version))
		writeFiles(t, rd, map[string][]byte{"pipelines/scoring.yaml": []byte(yaml), "ml/power.onnx": models[version]})
		name := rd + ".bundle"
		buildBundle(t, name, rd, "models", uint64(version), key)
		return name
	}

	rt, a := startAgent(t, dir, "edge-swap", pub)
	if rep, err := a.Apply(build(1)); err != nil || rep.Outcome != agent.Applied {
		t.Fatalf("apply v1: %v %v", rep, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	waitFeedsSubscribed(t, rt, 1)

	opts := paho.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID("pub-" + product).SetCleanSession(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	// publish sends reading i of every device, at QoS 1.
	publish := func(i int) error {
		toks := make([]paho.Token, 0, devices)
		for d := range devices {
			payload := fmt.Sprintf(`{"id":"%d","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"wind_speed":%d,"power":%d},"time":%d}}`,
				i, (i*devices+d)%50, d, base+int64(i)*1000)
			toks = append(toks, c.Publish(fmt.Sprintf("/sys/%s/dev%d/thing/measurepoint/post", product, d), 1, false, payload))
		}
		for _, tok := range toks {
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				return fmt.Errorf("publish: %v", tok.Error())
			}
		}
		return nil
	}
	// rows reads the file: every row in order.
	rows := func() []map[string]any {
		f, err := os.Open(out)
		if err != nil {
			return nil
		}
		defer f.Close()
		var rs []map[string]any
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	waitRows := func(n int) {
		t.Helper()
		for len(rows()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d rows written", len(rows()), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Two readings per device scored by v1, four published while v2 is
	// applied, two after.
	const before, during, after = 2, 4, 2
	for i := range before {
		if err := publish(i); err != nil {
			t.Fatal(err)
		}
	}
	waitRows(before * devices)
	var wg sync.WaitGroup
	var pubErr error
	wg.Go(func() {
		for i := before; i < before+during; i++ {
			if pubErr = publish(i); pubErr != nil {
				return
			}
		}
	})
	rep, err := a.Apply(build(2))
	if err != nil || rep.Outcome != agent.Applied {
		t.Fatalf("apply v2: %v %v", rep, err)
	}
	t.Logf("v2: %s", rep.Steps)
	if want := "scoring changed (feed: kept running, scored: started fresh, out: kept open)"; !strings.Contains(rep.Steps, want) {
		t.Errorf("switch report %q lacks %q", rep.Steps, want)
	}
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	for i := before + during; i < before+during+after; i++ {
		if err := publish(i); err != nil {
			t.Fatal(err)
		}
	}
	total := (before + during + after) * devices
	waitRows(total)

	// A model that does not load: rejected with the reason, v2 runs on.
	rep, err = a.Apply(build(3))
	if err != nil || rep.Outcome != agent.Rejected || !strings.Contains(rep.Reason, "pipelines/scoring.yaml:10:12: model ml/power.onnx: not an ONNX model") {
		t.Errorf("apply v3 (a model that does not load): %+v %v", rep, err)
	}
	if rel := rt.Release(); rel.Version != 2 {
		t.Errorf("after the rejected v3 the runtime runs v%d", rel.Version)
	}
	// The same files again: nothing to rebuild.
	rep, err = a.Apply(build(4))
	if err != nil || rep.Outcome != agent.Applied || !strings.Contains(rep.Steps, "scoring unchanged") {
		t.Errorf("apply v4 (v2's files): %+v %v", rep, err)
	}
	for _, st := range rt.Status() {
		if st.State != "running" {
			t.Errorf("pipeline %s is %s: %s", st.Name, st.State, st.Err)
		}
	}
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}

	// Every reading once, scored by the model its version names, and the
	// version changes once in the file's order.
	rs := rows()
	seen := map[string]bool{}
	changes, last := 0, 0
	count := map[int]int{}
	for k, r := range rs {
		id := fmt.Sprint(r["asset"], "@", r["time"])
		if seen[id] {
			t.Errorf("reading %s written twice", id)
		}
		seen[id] = true
		v, ok := versionOf[fmt.Sprint(r["model_version"])]
		if !ok {
			t.Fatalf("row %d: model_version %v is neither v1 nor v2", k, r["model_version"])
		}
		count[v]++
		if v != last {
			if last != 0 {
				changes++
				t.Logf("the version changes at row %d of %d", k, len(rs))
			}
			last = v
		}
		ws, _ := r["wind_speed"].(float64)
		pw, _ := r["power"].(float64)
		want := mlps[v].Ref([]float64{ws, pw})[0]
		if got, _ := r["expected"].(float64); math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("row %d (%s, v%d): expected %v, the v%d model gives %v", k, id, v, got, v, want)
		}
	}
	if len(rs) != total || len(seen) != total {
		t.Errorf("%d rows, %d readings, want %d", len(rs), len(seen), total)
	}
	if changes != 1 || count[1] < before*devices || count[2] < after*devices {
		t.Errorf("the version changes %d times (want once, v1 then v2): %d rows v1, %d rows v2", changes, count[1], count[2])
	}
	t.Logf("%d rows: %d scored by v1, %d by v2", len(rs), count[1], count[2])
}
