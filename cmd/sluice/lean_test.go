package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLeanBuild builds sluice as make lean does (-tags sluice_lean) and
// checks that the lean binary runs the edge's own pipelines, says of every
// component and command it leaves out (the hub, the embedded NATS server)
// that this build does not include it (not that the type is unknown),
// links none of their modules, and stays under its size bound.
func TestLeanBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go toolchain at %s: %v", goBin, err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice-lean")
	build := exec.Command(goBin, "build", "-tags", "sluice_lean", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags sluice_lean: %v\n%s", err, out)
	}

	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const source = "name: %s\nsources:\n  devices: {type: sim, turbines: 2, rows: 10, interval: 1s, seed: 1}\n"
	sluice := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode(), string(out)
			}
			t.Fatalf("sluice %v: %v", args, err)
		}
		return 0, string(out)
	}

	// What an edge runs is there.
	edge := write("edge.yaml", strings.ReplaceAll(source, "%s", "edge")+
		"steps:\n  stats: {type: window, input: devices, size: 1m, aggregates: {power: [avg]}}\n"+
		"sinks:\n  out: {type: discard, input: stats}\n")
	if code, out := sluice("validate", edge); code != 0 {
		t.Fatalf("lean sluice validate of an edge pipeline: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out := sluice(args...); code != 0 || !strings.HasPrefix(out, "sluice ") || !strings.Contains(out, ", lean edge build)") {
			t.Fatalf("lean sluice %v: exit %d, want a version line saying it is a lean edge build\n%s", args, code, out)
		}
	}

	// What it leaves out is named as left out of this build.
	cases := []struct{ kind, typ, yaml string }{
		{"step", "infer", "steps:\n  score: {type: infer, input: devices, model: m.onnx}\nsinks:\n  out: {type: discard, input: score}\n"},
		{"sink", "kafka", "sinks:\n  out: {type: kafka, input: devices, topic: t}\n"},
		{"sink", "redis", "sinks:\n  out: {type: redis, input: devices, stream: s}\n"},
		{"sink", "amqp", "sinks:\n  out: {type: amqp, input: devices, exchange: x}\n"},
		{"sink", "postgres", "sinks:\n  out: {type: postgres, input: devices, table: t}\n"},
	}
	for _, c := range cases {
		p := write(c.typ+".yaml", strings.ReplaceAll(source, "%s", c.typ)+c.yaml)
		code, out := sluice("validate", p)
		want := c.kind + ` type "` + c.typ + `" is not included in this build of sluice`
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("lean sluice validate with a %s %s: exit %d, want an error containing %q\n%s", c.kind, c.typ, code, want, out)
		}
	}
	if code, out := sluice("bench", "--scenario", "infer"); code == 0 || !strings.Contains(out, "not included in this build") {
		t.Errorf("lean sluice bench --scenario infer: exit %d, want it refused as not included\n%s", code, out)
	}

	// The hub and the embedded NATS server are left out: an edge does
	// not run the hub, and forwards to a broker elsewhere.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"hub"}, "sluice hub is not included in this build of sluice"},
		{[]string{"hub", "serve", "--postgres", "postgres://x@127.0.0.1/db"}, "sluice hub is not included in this build of sluice"},
		{[]string{"hub", "edges", "--help"}, "sluice hub is not included in this build of sluice"},
		{[]string{"demo", "--hub"}, "sluice demo --hub is not included in this build of sluice"},
		{[]string{"demo", "--cloud"}, "the embedded NATS server is not included in this build of sluice"},
		{[]string{"bench", "--scenario", "forward"}, "the embedded NATS server is not included in this build of sluice"},
	} {
		if code, out := sluice(c.args...); code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("lean sluice %s: exit %d, want it refused with %q\n%s", strings.Join(c.args, " "), code, c.want, out)
		}
	}
	mods, err := exec.Command(goBin, "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, mods)
	}
	for _, m := range []string{"github.com/nats-io/nats-server/v2", "github.com/jackc/pgx/v5", "github.com/pressly/goose/v3",
		"github.com/IBM/sarama", "github.com/redis/go-redis/v9", "gorgonia.org/tensor", "github.com/rabbitmq/amqp091-go"} {
		if strings.Contains(string(mods), "\t"+m+"\t") {
			t.Errorf("the lean binary links %s", m)
		}
	}
	// docs/bench.md#footprint: 31.3 MiB stripped; the bound leaves room
	// for growth, not for a left-out module coming back.
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 40<<20 {
		t.Errorf("lean binary: %d bytes, want at most 40 MiB", fi.Size())
	}
}
