package alert_test

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

// TestContentBombsRejected: content templates whose output or running time
// is out of proportion are load errors, before any row is seen.
func TestContentBombsRejected(t *testing.T) {
	cases := []struct{ name, content, want string }{
		{"range and wide printf", `{{range 1000}}{{printf "%999999d" 1}}{{end}}`, "width 999999"},
		{"large constant range", `{{range 100000000}}x{{end}}`, "range over 100000000"},
		{"nested constant ranges", `{{range 100}}{{range 100}}{{range 100}}x{{end}}{{end}}{{end}}`, "1000000 iterations"},
		{"wide printf", `{{printf "%999999d" 1}}`, "width 999999"},
		{"long precision", `{{printf "%.99999f" 1.0}}`, "precision 99999"},
		{"star width", `{{printf "%*d" 99999999 1}}`, "width from an argument"},
		{"call", `{{call .asset}}`, "call is not supported"},
		{"call as an argument", `{{print (call .attr 1)}}`, "call is not supported"},
		{"method on a built string", `{{$x := print .asset .asset}}{{range 10000}}{{$y := $.time.Format $x}}{{end}}`, "arguments must be constants"},
		{"method on a field", `{{.time.Format .turbine}}`, "arguments must be constants"},
		{"method in a pipeline", `{{.turbine | .time.Format}}`, "not a pipeline's result"},
		{"method on a chain", `{{(.time.Add 1).Format (print 1)}}`, "arguments must be constants"},
		{"method on a variable", `{{with $t := .time}}{{$t.Format $.turbine}}{{end}}`, "arguments must be constants"},
		{"long method argument", fmt.Sprintf(`{{.time.Format %q}}`, strings.Repeat("Monday", 200)), "longer than 1024 bytes"},
		{"recursive template", `{{define "x"}}{{template "x"}}{{template "x"}}{{end}}{{template "x"}}`, "not supported in content"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := fmt.Sprintf("rules: [{name: hot, expr: temp_max > 90, content: %q}]", c.content)
			_, err := alert.New(parse(t, config), in, engine.BuildContext{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestContentBounded: templates whose cost depends on the data render
// within max_content bytes and a loop budget; the alert is still raised,
// with the content cut and marked, and counted.
func TestContentBounded(t *testing.T) {
	huge := enginetest.Row{minute(0), minute(1), "WT-1", int64(10_000_000), 95.0, 1.0}
	fmtKey := enginetest.Row{minute(0), minute(1), "%99999999d", int64(1), 95.0, 1.0}
	cases := []struct {
		name, config string
		row          enginetest.Row
		wantPrefix   string
		counter      string
	}{
		{"range over a column", `{{range .count}}{{end}}`, huge, "content: ", "content_errors"},
		{"long output", `{{range .attr}}{{end}}{{range $k, $v := .}}{{range $}}{{printf "%1000s" "é"}}{{end}}{{end}}`, huge, "", "content_truncated"},
		{"format from the data", `{{printf .turbine 1}}`, fmtKey, "content: ", "content_errors"},
		{"strings built in variables", `{{$x := "AAAAAAAAAAAAAAAA"}}{{range 27}}{{$x = print $x $x}}{{end}}{{len $x}}`, huge, "content: ", "content_errors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := fmt.Sprintf("assets: farm.yaml\nmax_content: 4096\nrules: [{name: hot, expr: temp_max > 90, content: %q}]", c.config)
			got, _, counters := run(t, env(t), config, 0, c.row)
			if len(got) != 1 {
				t.Fatalf("got %d alerts, want 1", len(got))
			}
			content := got[0].content
			if len(content) > 4096 || !strings.HasPrefix(content, c.wantPrefix) {
				t.Errorf("content of %d bytes: %.200q", len(content), content)
			}
			if c.counter == "content_truncated" && !strings.HasSuffix(content, alert.TruncatedMarker) {
				t.Errorf("truncated content does not end with the marker: %.200q", content[max(0, len(content)-200):])
			}
			if counters[c.counter] != 1 || counters["raised"] != 1 {
				t.Errorf("counters %v, want %s 1 and raised 1", counters, c.counter)
			}
		})
	}
}

// TestContentStringsBounded: strings built in template variables by the
// functions that return strings count against one budget per rendering
// (twice max_content): a template that doubles a string 22 times fails
// its rendering (the alert is still raised, the content says why) and
// allocates a small fraction of the 64 MiB it asks for.
func TestContentStringsBounded(t *testing.T) {
	const seed = `{{$x := "AAAAAAAAAAAAAAAA"}}`
	cases := []struct{ name, content string }{
		{"print", seed + `{{range 22}}{{$x = print $x $x}}{{end}}{{len $x}}`},
		{"printf", seed + `{{range 22}}{{$x = printf "%s%s" $x $x}}{{end}}{{len $x}}`},
		{"println", seed + `{{range 22}}{{$x = println $x $x}}{{end}}{{len $x}}`},
		{"html", seed + `{{range 22}}{{$x = html $x $x}}{{end}}{{len $x}}`},
		{"js", seed + `{{range 22}}{{$x = js $x $x}}{{end}}{{len $x}}`},
		{"urlquery", seed + `{{range 22}}{{$x = urlquery $x $x}}{{end}}{{len $x}}`},
		{"pipeline", seed + `{{range 22}}{{$x = $x | print $x}}{{end}}{{len $x}}`},
		{"in a range over the data", seed + `{{range .count}}{{$x = print $x $x}}{{end}}{{len $x}}`},
		{"doubling 27 times", seed + `{{range 27}}{{$x = print $x $x}}{{end}}{{len $x}}`},
		{"escaper expansion", `{{$x := "<<<<<<<<"}}{{range 30}}{{$x = js $x}}{{end}}{{len $x}}`},
		{"printf padding", `{{$x := ""}}{{range 10000}}{{$x = printf "%s%1024d" $x 1}}{{end}}{{len $x}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := fmt.Sprintf("rules: [{name: hot, expr: temp_max > 90, content: %q}]", c.content)
			r := enginetest.Row{minute(0), minute(1), "WT-1", int64(10_000_000), 95.0, 1.0}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, _, counters := run(t, "", config, 0, r)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			if alloc > 16<<20 {
				t.Errorf("rendering allocated %.1f MiB, want under 16 MiB", float64(alloc)/(1<<20))
			}
			t.Logf("allocated %.2f MiB", float64(alloc)/(1<<20))
			if len(got) != 1 || counters["content_errors"] != 1 {
				t.Fatalf("got %v, counters %v: want one alert and content_errors 1", got, counters)
			}
			if c := got[0].content; !strings.HasPrefix(c, "content: ") || !strings.Contains(c, "max_content") {
				t.Errorf("content %.300q", c)
			}
		})
	}
}

// TestNonFiniteValues: a NaN or infinite reading neither raises nor clears
// an alert: the row goes to the errors port and the rule's state stays.
func TestNonFiniteValues(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name, config string
		rows         []enginetest.Row
		want         string
		errRows      int
	}{
		{"NaN does not clear", "rules: [{name: hot, expr: temp_max > 90}]",
			[]enginetest.Row{row(0, "WT-1", 95.0, 1.0), row(1, "WT-1", nan, 1.0), row(2, "WT-1", 95.0, 1.0)},
			"raised WT-1 hot 00:00 occur=00:00 recover=- value=95 \"hot on WT-1\"\n", 1},
		{"Inf does not raise", "rules: [{name: hot, expr: temp_max > 90}]",
			[]enginetest.Row{row(0, "WT-1", inf, 1.0), row(1, "WT-1", math.Inf(-1), 1.0)},
			"", 2},
		{"NaN does not clear with hysteresis", "rules: [{name: hot, expr: temp_max > 90, clear: temp_max < 80}]",
			[]enginetest.Row{row(0, "WT-1", 95.0, 1.0), row(1, "WT-1", nan, 1.0), row(2, "WT-1", 70.0, 1.0)},
			"raised WT-1 hot 00:00 occur=00:00 recover=- value=95 \"hot on WT-1\"\ncleared WT-1 hot 00:02 occur=00:00 recover=00:02 value=70 \"hot on WT-1\"\n", 1},
		{"NaN keeps pending", "rules: [{name: hot, expr: temp_max > 90, for: 2m}]",
			[]enginetest.Row{row(0, "WT-1", 95.0, 1.0), row(1, "WT-1", nan, 1.0), row(2, "WT-1", 95.0, 1.0)},
			"raised WT-1 hot 00:02 occur=00:00 recover=- value=95 \"hot on WT-1\"\n", 1},
		{"NaN in a column the rule does not read", "rules: [{name: hot, expr: temp_max > 90}]",
			[]enginetest.Row{row(0, "WT-1", 95.0, nan)},
			"raised WT-1 hot 00:00 occur=00:00 recover=- value=95 \"hot on WT-1\"\n", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, errs, _ := run(t, "", c.config, 0, c.rows...)
			if s := states(got); s != c.want {
				t.Errorf("got\n%swant\n%s", s, c.want)
			}
			if len(errs) != c.errRows {
				t.Errorf("%d error rows, want %d: %v", len(errs), c.errRows, errs)
			}
			for _, e := range errs {
				if r := e[len(e)-1].(string); !strings.Contains(r, "is not a finite number") {
					t.Errorf("reason %q", r)
				}
			}
		})
	}
}

// TestStatesBounded: 300,000 assets that come and go (each seen once, a
// third of them raising an alert that never clears) keep at most max_keys
// states; the heap stays under the documented bound and every eviction is
// counted.
func TestStatesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("300,000 assets")
	}
	mem := memory.NewGoAllocator()
	counters := engine.NewCounters()
	op, err := alert.New(parse(t, "rules: [{name: hot, expr: temp_max > 90}, {name: slow, expr: power_avg < 1, for: 1h}]"), in,
		engine.BuildContext{Pipeline: "p", Name: "a", Mem: mem, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	discard := func(_ int, b engine.Batch) error { b.Release(); return nil }
	const rounds, perRound = 6, 50_000
	var peak uint64
	for r := range rounds {
		for b := range perRound / 1000 {
			rows := make([]enginetest.Row, 0, 1000)
			for i := range 1000 {
				n := (r*perRound + b*1000 + i)
				temp := 50.0
				if n%3 == 0 {
					temp = 95
				}
				rows = append(rows, row(r*60+b, fmt.Sprintf("asset-%07d", n), temp, 0.5))
			}
			if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, discard); err != nil {
				t.Fatal(err)
			}
		}
		h := heap()
		peak = max(peak, h)
		t.Logf("round %d: heap %.1f MiB", r, float64(h-min(h, before))/(1<<20))
	}
	grown := peak - min(peak, before)
	const bound = 40 << 20 // docs/alert.md: about 250 bytes per asset with two rules, 100,000 assets
	if grown > bound {
		t.Errorf("heap grew by %.1f MiB, want under %d MiB", float64(grown)/(1<<20), bound>>20)
	}
	snap := counters.Snapshot()
	evicted := snap["evicted_idle"] + snap["evicted_full"] + snap["evicted_pending"] + snap["evicted_raised"]
	if evicted < rounds*perRound-100_000 || snap["evicted_raised"] == 0 || snap["evicted_pending"] == 0 {
		t.Errorf("counters %v: want at least %d evictions, raised and pending among them", snap, rounds*perRound-100_000)
	}
}

// TestIdleAndLongKeys: an asset with no alert pending or raised and no row
// for key_idle is forgotten; a raised alert is kept however idle; a key
// longer than max_key_bytes is an error row.
func TestIdleAndLongKeys(t *testing.T) {
	config := "key_idle: 10m\nmax_key_bytes: 8\nrules: [{name: hot, expr: temp_max > 90}]"
	rows := []enginetest.Row{
		row(0, "quiet", 50.0, 1.0),
		row(0, "hot", 95.0, 1.0),
		row(0, "much-too-long", 95.0, 1.0),
	}
	for m := 1; m <= 30; m++ {
		rows = append(rows, row(m, "other", 50.0, 1.0))
	}
	rows = append(rows, row(31, "hot", 50.0, 1.0)) // clears: the raised state was kept
	got, errs, counters := run(t, "", config, 1, rows...)
	want := "raised hot hot 00:00 occur=00:00 recover=- value=95 \"hot on hot\"\n" +
		"cleared hot hot 00:31 occur=00:00 recover=00:31 value=50 \"hot on hot\"\n"
	if s := states(got); s != want {
		t.Errorf("got\n%swant\n%s", s, want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0][len(errs[0])-1].(string), "longer than max_key_bytes (8)") {
		t.Errorf("error rows %v", errs)
	}
	if counters["evicted_idle"] != 1 || counters["evicted_raised"] != 0 {
		t.Errorf("counters %v, want evicted_idle 1 (quiet)", counters)
	}
}

// TestIntegerOverflow: an integer expression that overflows neither raises
// nor clears: the row goes to the errors port, the state stays.
func TestIntegerOverflow(t *testing.T) {
	config := "rules: [{name: r, expr: 'count * 153722867280912931 > 0'}]" // count 60 overflows
	got, errs, _ := run(t, "", config, 0, row(0, "A", 1.0, 1.0))
	if len(got) != 0 || len(errs) != 1 || !strings.Contains(errs[0][len(errs[0])-1].(string), "integer overflow") {
		t.Errorf("alerts %v, error rows %v", got, errs)
	}
}
