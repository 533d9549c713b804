package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/hub/uplink"
	"github.com/sluice-edge/sluice/engine/logfile"
)

// TestHubLogs: sluice hub logs EDGE asks an online edge's log through the
// hub with the filters of sluice logs; an offline edge is an error.
func TestHubLogs(t *testing.T) {
	h := startHubCmd(t, "hub_logs_test")
	edge := fmt.Sprintf("logs-%d", time.Now().UnixNano()%1e9)
	dir := logfile.Dir(t.TempDir())
	w, err := logfile.Open(logfile.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).UTC()
	for i := 0; i < 100; i++ {
		lvl := "INFO"
		if i%10 == 0 {
			lvl = "ERROR"
		}
		fmt.Fprintf(w, `{"time":%q,"level":%q,"msg":"event %d","pipeline":"p%d"}`+"\n", t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), lvl, i, i%2)
	}
	w.Close()

	if code, out, errOut := run(t, append([]string{"hub", "logs", edge}, h.client...)...); code != exitFailed || !strings.Contains(errOut, "not connected") {
		t.Fatalf("offline edge: exit %d\n%s%s", code, out, errOut)
	}
	nc, err := natsgo.Connect(h.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stop, err := uplink.ServeLogs(nc, edge, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	nc.Flush()

	tests := []struct {
		name      string
		args      []string
		code      int
		has, lack []string
	}{
		{"errors", []string{"--level", "error", "--since", "2h"}, 0, []string{"ERROR event 0 pipeline=p0", "ERROR event 90"}, []string{"event 1 "}},
		{"pattern and pipeline as json", []string{"--grep", `event 4\d"`, "--pipeline", "p1", "--json"}, 0, []string{`"msg":"event 41"`, `"msg":"event 49"`}, []string{`"msg":"event 40"`, "event 51"}},
		{"limit", []string{"--limit", "2", "--json"}, 0, []string{"event 98", "event 99"}, []string{"event 97"}},
		{"bad pattern", []string{"--grep", "(("}, exitUsage, nil, nil},
		{"bad cap", []string{"--max-bytes", "10"}, exitUsage, nil, nil},
		{"wait too long", []string{"--wait", "1h"}, exitUsage, nil, nil},
		{"wait for an online edge", []string{"--wait", "1m", "--limit", "1", "--json"}, 0, []string{"event 99"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, append(append([]string{"hub", "logs", edge}, h.client...), tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, s := range tt.has {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.lack {
				if strings.Contains(out, s) {
					t.Errorf("output holds %q:\n%s", s, out)
				}
			}
		})
	}
}
