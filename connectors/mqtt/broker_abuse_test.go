package mqtt

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// TestBrokerDeviceBatchNeedsGrant: a batch post names the device of each
// item, so a device user may not send one by default (it could post rows
// for any device key); a user granted the batch topics explicitly (a
// gateway) may.
func TestBrokerDeviceBatchNeedsGrant(t *testing.T) {
	b, _ := startTestBroker(t, BrokerOptions{Users: []BrokerUser{
		{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"},
		{Username: "gw7", Password: "pwg", ProductKey: "turbine", DeviceKey: "GW7",
			Publish: []string{"/sys/turbine/GW7/thing/measurepoint/post/batch"}},
		{Username: "engine", Password: "pwe", Engine: true},
	}})
	eng := mustDial3(t, b.URL(), "engine-"+suffix(), "engine", "pwe")
	if code := eng.subscribe("#"); code != 1 {
		t.Fatalf("engine SUBACK %#x", code)
	}
	dev := mustDial3(t, b.URL(), "T1-"+suffix(), "T1", "pw1")
	gw := mustDial3(t, b.URL(), "gw7-"+suffix(), "gw7", "pwg")
	const batch = `{"id":"1","params":[{"deviceKey":"ZZ1","measurepoints":{"v":1},"time":1700000000000}]}`
	for _, tc := range []struct {
		name  string
		who   *testClient
		topic string
		ok    bool
	}{
		{"device post", dev, "/sys/turbine/T1/thing/measurepoint/post", true},
		{"device resume", dev, "/sys/turbine/T1/thing/measurepoint/resume", true},
		{"device post batch", dev, "/sys/turbine/T1/thing/measurepoint/post/batch", false},
		{"device resume batch", dev, "/sys/turbine/T1/thing/measurepoint/resume/batch", false},
		{"gateway granted post batch", gw, "/sys/turbine/GW7/thing/measurepoint/post/batch", true},
		{"gateway not granted resume batch", gw, "/sys/turbine/GW7/thing/measurepoint/resume/batch", false},
		{"gateway own post", gw, "/sys/turbine/GW7/thing/measurepoint/post", true},
	} {
		marker := "/sys/turbine/T1/thing/measurepoint/post"
		if tc.who == gw {
			marker = "/sys/turbine/GW7/thing/measurepoint/post"
		}
		before := b.Stats().ACLRefused
		tc.who.publish(tc.topic, batch)
		tc.who.publish(marker, "marker")
		if tc.ok {
			eng.expectOnly(tc.topic)
		}
		// The broker handles a connection's packets in order.
		eng.expectOnly(marker)
		if refused := b.Stats().ACLRefused - before; (refused == 0) != tc.ok {
			t.Errorf("%s: publishing to %s: %d refusals, want allowed %v", tc.name, tc.topic, refused, tc.ok)
		}
	}
}

// TestBrokerIdleSocketsLeaveRoomForClients: sockets that never send
// CONNECT must not use up the connections of authenticated clients.
func TestBrokerIdleSocketsLeaveRoomForClients(t *testing.T) {
	const max = 5
	b, _ := startTestBroker(t, BrokerOptions{Limits: BrokerLimits{MaxConnections: max}, Users: []BrokerUser{
		{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"},
	}})
	for i := range max {
		rawDialFrom(t, b, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	pollUntil(t, "the idle sockets are accepted", func() bool { return b.Stats().Pending == max })
	if _, err := dial3From(t, b.URL(), "127.0.0.9", "T1-"+suffix(), "T1", "pw1"); err != nil {
		t.Fatalf("a device could not connect next to %d idle sockets: %v", max, err)
	}
}

// TestBrokerConnectionsPerUser: one device credential holds at most
// DefaultBrokerMaxConnectionsPerUser connections; engine users are not
// bounded, and other devices still connect.
func TestBrokerConnectionsPerUser(t *testing.T) {
	b, logs := startTestBroker(t, BrokerOptions{Users: []BrokerUser{
		{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"},
		{Username: "T2", Password: "pw2", ProductKey: "turbine", DeviceKey: "T2"},
		{Username: "engine", Password: "pwe", Engine: true},
	}})
	const perUser = 4
	for i := range perUser {
		mustDial3(t, b.URL(), fmt.Sprintf("T1-%d-%s", i, suffix()), "T1", "pw1")
	}
	const extra = 20
	for i := range extra {
		if _, err := dial3(t, b.URL(), fmt.Sprintf("T1-x%d-%s", i, suffix()), "T1", "pw1"); err == nil {
			t.Fatalf("connection %d of one device user was admitted", perUser+i+1)
		}
	}
	mustDial3(t, b.URL(), "T2-"+suffix(), "T2", "pw2")
	for i := range 2 * perUser {
		mustDial3(t, b.URL(), fmt.Sprintf("engine-%d-%s", i, suffix()), "engine", "pwe")
	}
	if got := b.Stats().UserConnectionsRefused; got != extra {
		t.Errorf("UserConnectionsRefused = %d, want %d", got, extra)
	}
	if n := strings.Count(logs.String(), "max_connections_per_user reached"); n > eventBurst {
		t.Errorf("%d log lines for %d refused connections, want at most %d", n, extra, eventBurst)
	}
}

// TestBrokerPendingLimits: connections that have not completed CONNECT
// are bounded overall and per remote address, refused at accept beyond
// it, and make room again once closed. Those of this host (127.0.0.1 to
// 127.0.0.1: the process's own components) have a pool of their own.
func TestBrokerPendingLimits(t *testing.T) {
	b, logs := startTestBroker(t, BrokerOptions{Limits: BrokerLimits{MaxPendingConnections: 6, MaxPendingPerIP: 2},
		Users: []BrokerUser{{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"}}})
	var idle []net.Conn
	for i := range 3 {
		from := fmt.Sprintf("127.0.0.%d", 2+i)
		for range 2 {
			idle = append(idle, rawDialFrom(t, b, from))
		}
		pollUntil(t, "the idle sockets are accepted", func() bool { return b.Stats().Pending == int64(len(idle)) })
		if i == 0 {
			// A third from the same address.
			closedByBroker(t, rawDialFrom(t, b, from))
		}
	}
	// The overall bound, from a new address.
	const extra = 20
	for range extra {
		closedByBroker(t, rawDialFrom(t, b, "127.0.0.9"))
	}
	if got, want := b.Stats().PendingRefused, int64(extra+1); got != want {
		t.Errorf("PendingRefused = %d, want %d", got, want)
	}
	if n := strings.Count(logs.String(), "max_pending_connections reached"); n > eventBurst {
		t.Errorf("%d log lines for %d refused connections, want at most %d", n, extra, eventBurst)
	}
	mustDial3(t, b.URL(), "local-"+suffix(), "T1", "pw1")
	if _, err := dial3From(t, b.URL(), "127.0.0.10", "T1-"+suffix(), "T1", "pw1"); err == nil {
		t.Fatal("a connection beyond max_pending_connections was accepted")
	}
	_ = idle[0].Close()
	pollUntil(t, "a closed idle socket makes room", func() bool { return b.Stats().Pending == int64(len(idle)-1) })
	mustDial3From(t, b.URL(), "127.0.0.10", "T1-"+suffix(), "T1", "pw1")
	if s := b.Stats(); s.Connections != 2 || s.Pending != int64(len(idle)-1) {
		t.Errorf("Connections %d, Pending %d; want 2 and %d", s.Connections, s.Pending, len(idle)-1)
	}
}

// TestBrokerEngineNotBounded: engine users connect whatever devices hold,
// and a device at its limit may still take over its own session.
func TestBrokerEngineNotBounded(t *testing.T) {
	b, _ := startTestBroker(t, BrokerOptions{Limits: BrokerLimits{MaxConnections: 2, MaxConnectionsPerUser: 1}, Users: []BrokerUser{
		{Username: "T1", Password: "pw1", ProductKey: "turbine", DeviceKey: "T1"},
		{Username: "T2", Password: "pw2", ProductKey: "turbine", DeviceKey: "T2"},
		{Username: "T3", Password: "pw3", ProductKey: "turbine", DeviceKey: "T3"},
		{Username: "engine", Password: "pwe", Engine: true},
	}})
	id := "T1-" + suffix()
	first := mustDial3(t, b.URL(), id, "T1", "pw1")
	mustDial3(t, b.URL(), "T2-"+suffix(), "T2", "pw2")
	if _, err := dial3(t, b.URL(), "T3-"+suffix(), "T3", "pw3"); err == nil {
		t.Fatal("a client beyond max_connections was admitted")
	}
	for i := range 3 {
		mustDial3(t, b.URL(), fmt.Sprintf("engine-%d-%s", i, suffix()), "engine", "pwe")
	}
	// The same client id: a takeover, which closes the first connection.
	mustDial3(t, b.URL(), id, "T1", "pw1")
	select {
	case <-first.lost:
	case <-time.After(waitFor):
		t.Fatal("the session was not taken over")
	}
	pollUntil(t, "the taken-over connection is counted out", func() bool { return b.Stats().Connections == 5 })
	if s := b.Stats(); s.ConnectionsRefused != 1 || s.UserConnectionsRefused != 0 {
		t.Errorf("ConnectionsRefused %d, UserConnectionsRefused %d; want 1 and 0", s.ConnectionsRefused, s.UserConnectionsRefused)
	}
}

// TestBrokerConnectionLimitFields reads and checks the connection limits
// of the broker field.
func TestBrokerConnectionLimitFields(t *testing.T) {
	for _, tc := range []struct {
		name, fields, err string
		want              BrokerLimits
	}{
		{"defaults", "", "", BrokerLimits{MaxConnections: DefaultBrokerMaxConnections, MaxPendingConnections: DefaultBrokerMaxPending,
			MaxPendingPerIP: DefaultBrokerMaxPendingPerIP, MaxConnectionsPerUser: DefaultBrokerMaxConnsPerUser}},
		{"set", "max_pending_connections: 16, max_pending_per_ip: 2, max_connections_per_user: 1", "",
			BrokerLimits{MaxConnections: DefaultBrokerMaxConnections, MaxPendingConnections: 16, MaxPendingPerIP: 2, MaxConnectionsPerUser: 1}},
		{"zero pending", "max_pending_connections: 0", "max_pending_connections must be between", BrokerLimits{}},
		{"negative per ip", "max_pending_per_ip: -1", "max_pending_per_ip must be between", BrokerLimits{}},
		{"huge per user", "max_connections_per_user: 10000000", "max_connections_per_user must be between", BrokerLimits{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf("format: json\ntopics: [a]\nschema: {time: ts, fields: {v: int64}}\n"+
				"broker: {embedded: true, listen: %q, allow_anonymous: true, %s}\n", freeAddr(t), tc.fields)
			src, err := tryBuildSource(doc, engine.BuildContext{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := embeddedOptions(src.emb.listen).Limits
			got.normalize()
			if got.MaxConnections != tc.want.MaxConnections || got.MaxPendingConnections != tc.want.MaxPendingConnections ||
				got.MaxPendingPerIP != tc.want.MaxPendingPerIP || got.MaxConnectionsPerUser != tc.want.MaxConnectionsPerUser {
				t.Errorf("limits %+v, want %+v", got, tc.want)
			}
		})
	}
}

func mustDial3From(t testing.TB, url, from, id, user, password string) *testClient {
	t.Helper()
	c, err := dial3From(t, url, from, id, user, password)
	if err != nil {
		t.Fatalf("%s connecting from %s: %v", id, from, err)
	}
	return c
}
