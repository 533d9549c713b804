package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/engine/redact"
)

// TestHubDemo runs sluice demo --hub against the local PostgreSQL, in a
// schema of its own, with a short outage. It must end by itself with exit
// 0 well within a minute, say that both edges applied version 1 and raised
// alerts the hub stored, that the cut edge was offline and pending while
// the other applied version 2, and that after the link came back it
// applied version 2 and its backlog drained as backfill; and the hub's
// tables must hold what it said. It leaves nothing in its temporary
// directory.
func TestHubDemo(t *testing.T) {
	dsn := outboundtest.PostgresDSN(t)
	schema := fmt.Sprintf("sluice_demo_test_%d", time.Now().UnixNano())
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	t.Cleanup(func() { _, _ = db.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })

	// The demo's files go to a temporary directory whose path YAML would
	// misread if written out unquoted; none is left behind.
	tmp := filepath.Join(t.TempDir(), "tmp: dir #1")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	// Every goroutine the demo started has ended when it returns, but one
	// of nats.go: the reconnect watcher its asynchronous publish starts (an
	// object store Put, the hub's release) sometimes outlives the close of
	// its connection.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
	start := time.Now()
	code, out, stderr := run(t, "demo", "--hub", "--postgres", dsn, "--schema", schema, "--outage", "1s")
	took := time.Since(start)
	t.Logf("took %s; output:\n%s", took.Round(time.Millisecond), out)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr at the default log level:\n%s", stderr)
	}
	if took > 45*time.Second {
		t.Errorf("the demo took %s", took)
	}

	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in the temporary directory: %v", left)
	}

	// The narrative, in order.
	steps := []string{
		`hub: edge-a online, no release, backlog 0 rows; edge-b online, no release, backlog 0 rows`,
		`hub: release r1 of turbines v1 to all: edge-a pending, edge-b pending`,
		`hub: release r1: edge-a applied, edge-b applied`,
		`hub: [1-9]\d* alerts stored: edge-a [1-9]\d* \(gearbox_warm [1-9]\d*\), edge-b [1-9]\d* \(gearbox_warm [1-9]\d*\); by rule set version: "turbines v1 rules/turbine.yaml" [1-9]\d*\n`,
		`link of edge-b cut`,
		// edge-b has not applied v2: pending, or offline (pending, and
		// its last heartbeat older than the demo's 3 s) when edge-a took
		// longer than that to apply it, as on a loaded machine.
		`hub: release r2: edge-a applied, edge-b (pending|offline)\n`,
		`edge-a online, runs turbines v2, backlog \d+ rows; edge-b offline \(last heartbeat [\d.]+s ago\), runs turbines v1`,
		`link of edge-b restored`,
		`hub: release r2: edge-a applied, edge-b applied \(edge-b caught up`,
		`hub: edge-b online, runs turbines v2, backlog 0 rows \(drained .*edge-b [1-9]\d* \([1-9]\d* backfilled, none missing\)`,
		`alerts stored: edge-a \d+ \(.*high_output [1-9]\d*\), edge-b \d+ \(.*high_output [1-9]\d*\); by rule set version: .*"turbines v2 rules/turbine.yaml" [1-9]`,
		`sluice hub alerts --active says:\n  STATE +SEVERITY +ASSET +RULE +EDGE`,
		`done: both edges run turbines v2`,
	}
	rest := out
	for _, s := range steps {
		loc := regexp.MustCompile(s).FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("the output lacks, after what came before, %s", s)
		}
		rest = rest[loc[1]:]
	}

	// The hub's tables agree.
	q := func(sql string, dst ...any) {
		t.Helper()
		if err := db.QueryRow(ctx, strings.ReplaceAll(sql, "S.", schema+"."), nil...).Scan(dst...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var v2 int
	q(`SELECT count(*) FROM S.edges WHERE bundle = 'turbines' AND version = 2 AND id IN ('edge-a', 'edge-b')`, &v2)
	if v2 != 2 {
		t.Errorf("%d edges run turbines v2 in the hub, want 2", v2)
	}
	for _, edge := range []string{"edge-a", "edge-b"} {
		var alerts, v2alerts int
		q(`SELECT count(*), count(*) FILTER (WHERE rule_set_version = 'turbines v2 rules/turbine.yaml') FROM S.alerts_current WHERE edge = '`+edge+`'`, &alerts, &v2alerts)
		if alerts == 0 || v2alerts == 0 {
			t.Errorf("%s: %d alerts in the hub, %d of version 2", edge, alerts, v2alerts)
		}
	}
	var rows, backfilled, span int64
	q(`SELECT count(*), count(*) FILTER (WHERE backfill), max(seq) - min(seq) + 1 FROM S.telemetry WHERE edge = 'edge-b'`, &rows, &backfilled, &span)
	if backfilled == 0 || rows != span {
		t.Errorf("edge-b: %d rows in the hub, %d backfilled, sequence span %d", rows, backfilled, span)
	}
	m := regexp.MustCompile(`edge-b (\d+) \((\d+) backfilled, none missing\)`).FindAllStringSubmatch(out, -1)
	if said, _ := strconv.ParseInt(m[len(m)-1][2], 10, 64); said == 0 || said > backfilled {
		t.Errorf("the demo said %d rows of edge-b were backfilled; the hub holds %d", said, backfilled)
	}
}

// TestHubDemoRefusesOtherSchemas: the demo drops its schema, so it takes
// only its own names, and refuses before it connects to anything; flags of
// the other demos do not go with --hub, nor --hub's without it.
func TestHubDemoRefusesOtherSchemas(t *testing.T) {
	for _, schema := range []string{"public", "sluice_hub", "sluice_demox", "sluice_demo_X", "sluice_demo_" + strings.Repeat("a", 60)} {
		code, out, stderr := run(t, "demo", "--hub", "--schema", schema, "--postgres", "postgres://nobody@127.0.0.1:1/none")
		if code != exitUsage || out != "" || !strings.Contains(stderr, "--schema") {
			t.Errorf("--schema %s: exit %d, stdout %q, stderr %q; want %d and a message on --schema", schema, code, out, stderr, exitUsage)
		}
	}
	for _, args := range [][]string{{"--hub", "--direct"}, {"--hub", "--data-dir", "x"}, {"--hub", "--metrics-addr", ":9464"}, {"--outage", "1s"}, {"--schema", "sluice_demo"}} {
		if code, _, stderr := run(t, append([]string{"demo"}, args...)...); code != exitUsage || !strings.Contains(stderr, "--") {
			t.Errorf("demo %v: exit %d (%s), want %d", args, code, stderr, exitUsage)
		}
	}
}

// TestHubDemoWithoutPostgres: an unreachable database is a failure (1)
// that names PostgreSQL and not the DSN's password, and the demo leaves
// no temporary directory behind. The DSN's password, not its user name,
// is masked.
func TestHubDemoWithoutPostgres(t *testing.T) {
	for _, dsn := range []string{"postgres://postgres:s3cret-pw@127.0.0.1:1/test?connect_timeout=2", "postgres://postgres@127.0.0.1:1/test?connect_timeout=2"} {
		t.Setenv("TMPDIR", t.TempDir())
		code, _, stderr := run(t, "demo", "--hub", "--postgres", dsn)
		if code != exitFailed || !strings.Contains(stderr, "PostgreSQL") || strings.Contains(stderr, "s3cret-pw") {
			t.Fatalf("exit %d, stderr %q; want %d, a message naming PostgreSQL without the password", code, stderr, exitFailed)
		}
		if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
			t.Errorf("left in the temporary directory: %v", left)
		}
	}
	// The password is masked from then on, the user name is not (it
	// would be masked in every later message of the process).
	if got := redact.String("user postgres, password s3cret-pw"); got != "user postgres, password xxxxx" {
		t.Errorf("masked: %q", got)
	}
}
