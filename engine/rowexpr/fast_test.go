package rowexpr

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

var diffSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "dev", Type: engine.String},
	{Name: "temp", Type: engine.Float64},
	{Name: "n", Type: engine.Int64},
	{Name: "m", Type: engine.Int64},
	{Name: "ok", Type: engine.Bool},
	{Name: "t2", Type: engine.Timestamp},
}, "time", "dev")

// TestNativeMatchesVM evaluates every expression on the native evaluator
// and on the expr VM over random rows and attributes and requires the same
// result, or an error from both.
func TestNativeMatchesVM(t *testing.T) {
	env, err := NewEnv(diffSchema, Var{Name: "attr", Type: MapVar}, Var{Name: "asset", Type: StringVar})
	if err != nil {
		t.Fatal(err)
	}
	exprs := []string{
		`temp > 80`, `80 < temp`, `1 >= temp`, `temp <= 2.5`, `"a" == dev`, `2.5 == temp`, `temp >= n`, `n < m`, `n <= 3`, `temp == 1`, `n == 1.0`, `n != m`,
		`temp * 1.8 + 32`, `n * 2 + 1`, `n - m`, `n * m`, `n / m`, `n % m`, `temp / n`, `n ** 2`, `temp ^ 0.5`,
		`-n`, `-temp`, `+temp`, `!ok`, `not ok`, `ok && temp > 1`, `ok || n > 2`, `ok and not ok`, `ok or ok`,
		`ok == true`, `dev == "a"`, `dev != asset`, `dev < "b"`, `dev >= "b"`, `time < t2`, `time == t2`, `time >= t2`,
		`dev in ["a", "b"]`, `dev not in ["a", "b"]`, `dev contains "a"`, `dev startsWith "b"`, `dev endsWith "c"`,
		`dev matches "^[ab]+$"`, `ok ? temp : n`, `ok ? n : m`, `ok ? dev : asset`, `ok ? time : t2`,
		`abs(n - m)`, `abs(temp)`, `int(temp)`, `float(n)`, `int(n)`,
		`temp > attr.max`, `attr.max < temp`, `temp <= attr.max - 5`, `attr.max * 2`, `attr.max / 2`, `-attr.max`,
		`attr.mode == "auto"`, `"auto" == attr.mode`, `attr.mode != "auto"`, `attr.max == n`, `attr.flag`, `!attr.flag`,
		`attr.flag && ok`, `attr.mode < "m"`, `n % attr.div`, `attr.max`, `attr.mode`, `attr.missing > 1`,
		`attr.missing == 1`, `attr.mode > 1`, `attr.max + n`, `n + attr.max`, `$env.temp + $env["n"]`, `asset`,
		`temp > 1e308 * 10`, `n * 4611686018427387904`, `temp != temp`, `(temp > 3) == ok`, `n > 2 ? 1 : 0`,
	}
	attrs := []map[string]any{
		{"max": 50.0, "mode": "auto", "flag": true, "div": 3},
		{"max": int64(70), "mode": "manual", "flag": false, "div": int64(0)},
		{"max": "x", "mode": 3, "flag": "no", "div": 2.5},
		{},
		nil,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var rows []enginetest.Row
	devs := []string{"a", "b", "ab", "c", "abc", ""}
	floats := []float64{0, -1, 1, 2.5, 50, 85.5, 100, math.NaN(), math.Inf(1)}
	for range 300 {
		rows = append(rows, enginetest.Row{
			int64(rng.IntN(5)) * 1000, devs[rng.IntN(len(devs))], floats[rng.IntN(len(floats))],
			int64(rng.IntN(7) - 3), int64(rng.IntN(5) - 2), rng.IntN(2) == 0, int64(rng.IntN(5)) * 1000,
		})
	}
	rec := enginetest.Record(mem, diffSchema, rows...)
	defer rec.Release()
	fr := env.NewFrame()
	if err := fr.Bind(rec); err != nil {
		t.Fatal(err)
	}
	for _, src := range exprs {
		e, err := env.Compile(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if !e.Native() {
			t.Errorf("%s: not native", src)
			continue
		}
		slow := *e
		slow.fast = nil
		for i := range rows {
			fr.Row(i)
			fr.SetMap(0, attrs[i%len(attrs)])
			fr.SetString(1, devs[(i/2)%len(devs)])
			a, aerr := fr.Eval(e)
			b, berr := fr.Eval(&slow)
			if (aerr != nil) != (berr != nil) {
				t.Errorf("%s row %d: native err %v, vm err %v (results %v, %v)", src, i, aerr, berr, a, b)
				continue
			}
			if aerr == nil && !same(a, b) {
				t.Errorf("%s row %d (%v, attr %v): native %#v, vm %#v", src, i, rows[i], attrs[i%len(attrs)], a, b)
			}
		}
	}
}

func same(a, b any) bool {
	if x, ok := a.(float64); ok {
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	}
	if x, ok := a.(time.Time); ok {
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return fmt.Sprintf("%T %v", a, a) == fmt.Sprintf("%T %v", b, b)
}

// TestBoxUnderConcurrency runs the VM path on several goroutines, each with
// its own frame over a shared expression, and checks every result; run it
// with -race.
func TestBoxUnderConcurrency(t *testing.T) {
	env, err := NewEnv(diffSchema, Var{Name: "attr", Type: MapVar}, Var{Name: "asset", Type: StringVar})
	if err != nil {
		t.Fatal(err)
	}
	// `date` and string concatenation keep this expression on the VM.
	e, err := env.Compile(`dev + asset + string(n) + string(time > date("1970-01-01T00:00:01Z"))`)
	if err != nil {
		t.Fatal(err)
	}
	if e.Native() {
		t.Fatal("expression unexpectedly native")
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var rows []enginetest.Row
	for i := range 200 {
		rows = append(rows, enginetest.Row{int64(i * 10), fmt.Sprintf("d%d", i), float64(i), int64(i), int64(0), true, int64(0)})
	}
	rec := enginetest.Record(mem, diffSchema, rows...)
	defer rec.Release()
	done := make(chan error)
	for g := range 4 {
		go func() {
			fr := env.NewFrame()
			if err := fr.Bind(rec); err != nil {
				done <- err
				return
			}
			for k := range 5 {
				for i := range rows {
					fr.Row(i)
					asset := fmt.Sprintf("g%d", g)
					fr.SetString(1, asset)
					s, err := fr.String(e)
					if err != nil {
						done <- err
						return
					}
					want := fmt.Sprintf("d%d%s%d%v", i, asset, i, i*10 > 1000)
					if s != want {
						done <- fmt.Errorf("goroutine %d pass %d row %d: got %q, want %q", g, k, i, s, want)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestBoxProbe(t *testing.T) {
	env, err := NewEnv(diffSchema)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBox(env.typ, env.probeOff, env.probeIndex)
	if err != nil {
		t.Fatal(err)
	}
	*(*float64)(b.at(env.colOff[2])) = 42.5
	*(*string)(b.at(env.colOff[1])) = "dev-1"
	v := b.val
	if got := fmt.Sprint(v); got == "" {
		t.Fatal("empty box")
	}
	e, err := env.Compile(`dev + ":" + string(temp)`)
	if err != nil {
		t.Fatal(err)
	}
	fr := env.NewFrame()
	fr.box = b
	out, err := fr.vm.Run(e.prog, fr.box.val)
	if err != nil || out != "dev-1:42.5" {
		t.Fatalf("got %v, %v", out, err)
	}
}
