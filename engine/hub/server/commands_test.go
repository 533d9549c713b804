package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestCommandsAPI: POST /v1/commands records a command and publishes it
// on the edge's subject of SLUICE_COMMANDS; refused bodies; the edge's
// records replace it by version, the highest kept; GET /v1/commands
// pages newest first.
func TestCommandsAPI(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	v, err := in.client.IssueCommand(ctx, server.CommandRequest{Edge: "e1", Product: "pk", Asset: "T1",
		Inputs: map[string]any{"power_limit": 150.0}, ExpireIn: "2m"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != store.CommandIssued || v.Edge != "e1" || v.Service != "measurepoint.set" || v.Expiry == nil ||
		v.Expiry.Sub(v.Created) != 2*time.Minute || v.IssuedBy != "api" || v.Version != 0 {
		t.Fatalf("issued %+v", v)
	}
	_, js := e.connect()
	s, err := js.Stream(ctx, protocol.CommandStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "sluice.e1.commands")
	if err != nil {
		t.Fatal(err)
	}
	c, err := protocol.DecodeCommand(m.Data)
	if err != nil || c.ID != v.ID || c.Asset != "T1" || !c.Expiry.Equal(*v.Expiry) || m.Header.Get("Nats-Msg-Id") != v.ID {
		t.Fatalf("published %s (%v)", m.Data, err)
	}

	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"unknown field", `{"edge":"e1","asset":"T1","inputs":{"p":1},"lease":"x"}`, 400},
		{"bad edge", `{"edge":"e.1","asset":"T1","inputs":{"p":1}}`, 400},
		{"bad asset", `{"edge":"e1","asset":"T1/#","inputs":{"p":1}}`, 400},
		{"no points", `{"edge":"e1","asset":"T1","inputs":{}}`, 400},
		{"deadline too far", `{"edge":"e1","asset":"T1","inputs":{"p":1},"expire_in":"25h"}`, 400},
		{"trailing data", `{"edge":"e1","asset":"T1","inputs":{"p":1}} {}`, 400},
		{"too large", `{"edge":"e1","asset":"T1","inputs":{"p":"` + strings.Repeat("x", 70<<10) + `"}}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+in.api.Addr()+server.CommandsPath, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("answered %d, want %d", resp.StatusCode, tc.code)
			}
		})
	}
	resp, err := http.Post("http://"+in.api.Addr()+server.CommandsPath, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", resp.StatusCode)
	}

	// The edge's records: the highest version wins, whatever the order.
	rec := func(version uint64, status, reason string) store.Command {
		return store.Command{Edge: "e1", ID: v.ID, Product: "pk", Asset: "T1", Service: "measurepoint.set",
			Inputs: map[string]any{"power_limit": 150.0}, Origin: "cloud:hub", Class: "cloud", Status: status, Reason: reason,
			Expiry: *v.Expiry, Created: v.Created.Add(time.Second), Updated: v.Created.Add(time.Duration(version) * time.Second), Version: version}
	}
	for _, r := range []store.Command{rec(5, "sent", ""), rec(3, "queued", "class cloud"), rec(7, "acked", "ok"), rec(7, "acked", "ok"), rec(6, "sent", "")} {
		if err := in.st.RecordCommand(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := in.client.Command(ctx, "e1", v.ID)
	if err != nil || got.Status != "acked" || got.Version != 7 || got.Reason != "ok" || got.IssuedBy != "api" || !got.Created.Equal(v.Created) {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := in.client.Command(ctx, "e1", "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown id: %v", err)
	}

	// Records of every origin list newest first, page after page.
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for i := range 7 {
		r := store.Command{Edge: "e2", ID: fmt.Sprintf("local-%d", i), Asset: "T2", Service: "measurepoint.set",
			Inputs: map[string]any{"p": i}, Origin: "local:hmi", Class: "safety", Status: "acked",
			Created: t0.Add(time.Duration(i%3) * time.Second), Updated: t0.Add(time.Minute), Version: uint64(i + 1)}
		if err := in.st.RecordCommand(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var all []server.CommandView
	after := ""
	for {
		page, next, err := in.client.CommandsPage(ctx, server.CommandFilter{Edge: "e2", Status: "acked"}, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		after = next
	}
	seen := map[string]bool{}
	for i, c := range all {
		if seen[c.ID] || c.Edge != "e2" || i > 0 && c.Created.After(all[i-1].Created) {
			t.Fatalf("listing out of order or repeated at %d: %+v", i, all)
		}
		seen[c.ID] = true
	}
	if len(all) != 7 {
		t.Fatalf("%d commands listed, want 7", len(all))
	}
	b, _ := json.Marshal(all[0])
	for _, field := range []string{"id", "edge", "product", "asset", "service", "inputs", "origin", "class", "status", "reason", "expiry", "created", "updated", "version"} {
		if !strings.Contains(string(b), `"`+field+`":`) {
			t.Errorf("a listed command has no %q: %s", field, b)
		}
	}
	var ae *server.APIError
	if _, _, err := in.client.CommandsPage(ctx, server.CommandFilter{Edge: "e*"}, "", 0); !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("bad edge filter: %v", err)
	}
}
