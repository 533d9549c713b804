package drilltest

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/pipelines"
)

// TestFarmCounts checks the counts of the two drills' datasets, as both
// drills have delivered them.
func TestFarmCounts(t *testing.T) {
	for _, c := range []struct {
		name    string
		farm    Farm
		windows map[string]time.Duration
		want    map[string]int
	}{
		{"kill drill", Farm{Turbines: 10, Minutes: 180, Close: 300}, map[string]time.Duration{"m1": time.Minute, "h1": time.Hour},
			map[string]int{"m1": 1800, "h1": 30, "alert raised": 60, "alert cleared": 58}},
		{"power-loss drill", Farm{Turbines: 6, Minutes: 120, Close: 240}, map[string]time.Duration{"m1": time.Minute},
			map[string]int{"m1": 720, "alert raised": 24, "alert cleared": 22}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.farm.Counts(c.windows)
			if !maps.Equal(got, c.want) {
				t.Errorf("counts %v, want %v", got, c.want)
			}
			var sum uint64
			for _, n := range c.want {
				sum += uint64(n)
			}
			if Total(got) != sum {
				t.Errorf("total %d, want %d", Total(got), sum)
			}
		})
	}
}

// TestPost checks that a post is EnOS JSON with the turbine's reading at
// the minute's event time, and an id unique over the dataset.
func TestPost(t *testing.T) {
	f := Farm{Turbines: 3, Minutes: 40, Close: 100}
	ids := map[string]bool{}
	for m := range f.Minutes {
		for i := range f.Turbines {
			var p struct {
				ID     string `json:"id"`
				Params struct {
					MP struct {
						Temp, Power float64
					} `json:"measurepoints"`
					Time int64 `json:"time"`
				} `json:"params"`
			}
			if err := json.Unmarshal(f.Post(i, m), &p); err != nil {
				t.Fatalf("turbine %d minute %d: %v", i, m, err)
			}
			temp, power := Reading(i, m)
			if p.Params.MP.Temp != temp || p.Params.MP.Power != power || p.Params.Time != Base.Add(time.Duration(m)*time.Minute).UnixMilli() {
				t.Errorf("turbine %d minute %d: %+v", i, m, p.Params)
			}
			if Hot(i, m) != (temp > 80) || !Hot(i, m) && temp >= 75 {
				t.Errorf("turbine %d minute %d: temperature %v, hot %v", i, m, temp, Hot(i, m))
			}
			if ids[p.ID] {
				t.Errorf("id %s twice", p.ID)
			}
			ids[p.ID] = true
		}
	}
}

// TestSinksValid checks that the sinks are a valid sinks section.
func TestSinksValid(t *testing.T) {
	for _, s := range []Sinks{
		{URL: "nats://127.0.0.1:4222", Subject: "a.b", Stream: "S", Drain: "5s"},
		{URL: "nats://127.0.0.1:4222", Subject: "a.b", Stream: "S", Drain: "1s", Buffer: "{max_bytes: 256MiB}"},
	} {
		def := `name: farm
sources:
  m1: {type: sim}
  hot: {type: sim}
sinks:
` + s.YAML("m1", "hot")
		file := filepath.Join(t.TempDir(), "farm.yaml")
		if err := os.WriteFile(file, []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, errs := pipelines.Validate([]string{file}, nil, pipelines.Options{DataDir: t.TempDir()}); len(errs) > 0 {
			t.Errorf("%v\n%s", errs, def)
		}
		for _, want := range []string{"subject: a.b.m1", "subject: a.b.hot", "duplicate_window: 10m", "drain_timeout: " + s.Drain} {
			if !strings.Contains(def, want) {
				t.Errorf("no %q in\n%s", want, def)
			}
		}
	}
}

// TestIDLess checks the order of message ids: by stream, then by
// sequence number as a number.
func TestIDLess(t *testing.T) {
	ids := []string{"e/b/1", "e/a/10", "x", "e/a/9", "e/a/x", "e/a/2"}
	slices.SortFunc(ids, IDLess)
	want := []string{"e/a/2", "e/a/9", "e/a/10", "e/a/x", "e/b/1", "x"}
	if !slices.Equal(ids, want) {
		t.Errorf("sorted %v, want %v", ids, want)
	}
}

// TestDiff checks what Diff reports.
func TestDiff(t *testing.T) {
	out := func(copies int, msgs ...string) Output {
		o := Output{Msgs: map[string]Msg{}, Copies: copies}
		for _, m := range msgs {
			id, p, _ := strings.Cut(m, "=")
			o.Msgs[id] = Msg{ID: id, Kind: "m1", Payload: []byte(p)}
		}
		return o
	}
	want := out(0, "e/s/1=a", "e/s/2=b", "e/s/3=c")
	for _, c := range []struct {
		name        string
		got         Output
		allowCopies bool
		diff        []string // what the description holds; none: no difference
	}{
		{"equal", out(0, "e/s/1=a", "e/s/2=b", "e/s/3=c"), false, nil},
		{"copies allowed", out(2, "e/s/1=a", "e/s/2=b", "e/s/3=c"), true, nil},
		{"copies", out(2, "e/s/1=a", "e/s/2=b", "e/s/3=c"), false, []string{"2 ids stored twice"}},
		{"missing", out(0, "e/s/1=a", "e/s/3=c"), true, []string{"1 missing", "missing e/s/2 b"}},
		{"extra", out(0, "e/s/1=a", "e/s/2=b", "e/s/3=c", "e/s/4=d"), true, []string{"1 extra", "extra e/s/4 d"}},
		{"differing", out(0, "e/s/1=a", "e/s/2=x", "e/s/3=c"), true, []string{"1 differing", "reference b", "drill     x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Diff(want, c.got, c.allowCopies)
			if (d == "") != (c.diff == nil) {
				t.Fatalf("diff %q", d)
			}
			for _, s := range c.diff {
				if !strings.Contains(d, s) {
					t.Errorf("no %q in\n%s", s, d)
				}
			}
		})
	}
}
