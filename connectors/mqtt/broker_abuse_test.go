package mqtt

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

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

// testClock is a clock the test moves.
type testClock struct{ now atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.now.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *testClock) advance(d time.Duration) { c.now.Add(int64(d)) }
func (c *testClock) set(t *backoffTable)     { t.mu.Lock(); t.now = c.Now; t.mu.Unlock() }
func hashAt(t testing.TB, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// watchCompare replaces the broker's bcrypt comparison by one that
// counts the comparisons, the most running at once and the cost of the
// hashes compared.
type compareWatch struct {
	calls, running, most atomic.Int64
	mu                   sync.Mutex
	costs                []int
}

func watchCompare(b *Broker) *compareWatch {
	w := &compareWatch{}
	b.auth.hashing <- struct{}{} // no comparison runs while it changes
	b.auth.compare = func(hash, password []byte) error {
		w.calls.Add(1)
		n := w.running.Add(1)
		defer w.running.Add(-1)
		for m := w.most.Load(); n > m && !w.most.CompareAndSwap(m, n); m = w.most.Load() {
		}
		c, _ := bcrypt.Cost(hash)
		w.mu.Lock()
		w.costs = append(w.costs, c)
		w.mu.Unlock()
		return bcrypt.CompareHashAndPassword(hash, password)
	}
	<-b.auth.hashing
	return w
}

func (w *compareWatch) lastCost() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.costs) == 0 {
		return -1
	}
	return w.costs[len(w.costs)-1]
}

// TestBrokerAuthBackoff: after a failed login, an address's logins are
// refused without a password check for a second, doubling after each
// failure; other addresses, the same user from them, and the process's
// own user are not held back; a success ends the back-off.
func TestBrokerAuthBackoff(t *testing.T) {
	b, logs := startTestBroker(t, BrokerOptions{Users: []BrokerUser{
		{Username: "dev", PasswordHash: hash(t, "pw"), ProductKey: "p", DeviceKey: "dev"},
		{Username: "clear", Password: "pwc", ProductKey: "p", DeviceKey: "clear"},
		engineAccount(),
	}})
	clock := newTestClock()
	clock.set(b.auth.backoff)
	w := watchCompare(b)
	const attacker, other = "127.0.0.2", "127.0.0.3"
	type step struct {
		advance      time.Duration
		from, user   string
		password     string
		ok           bool
		refused      int64 // AuthRefused after the step
		throttled    int64 // AuthThrottled after the step
		compareCalls int64
	}
	steps := []step{
		{0, attacker, "dev", "wrong", false, 1, 0, 1},
		{0, attacker, "dev", "pw", false, 1, 1, 1}, // backing off: not checked
		{0, attacker, "clear", "pwc", false, 1, 2, 1},
		{0, attacker, "nobody", "x", false, 1, 3, 1},
		{0, other, "dev", "pw", true, 1, 3, 2},                   // the user is not locked out
		{0, attacker, engineUser, engineSecret(), true, 1, 3, 2}, // the process's own user gets in
		{999 * time.Millisecond, attacker, "dev", "pw", false, 1, 4, 2},
		{time.Millisecond, attacker, "dev", "wrong", false, 2, 4, 3}, // checked again after 1s: 2s now
		{1999 * time.Millisecond, attacker, "dev", "wrong", false, 2, 5, 3},
		{time.Millisecond, attacker, "clear", "wrong", false, 3, 5, 4}, // a wrong clear password costs a check too: 4s
		{4 * time.Second, attacker, "dev", "pw", true, 3, 5, 4},        // cached: no check; ends the back-off
		{0, attacker, "dev", "wrong", false, 4, 5, 5},                  // 1s again
		{time.Second, attacker, "dev", "wrong", false, 5, 5, 6},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		_, err := dial3From(t, b.URL(), s.from, fmt.Sprintf("c%d-%s", i, suffix()), s.user, s.password)
		st := b.Stats()
		if (err == nil) != s.ok || st.AuthRefused != s.refused || st.AuthThrottled != s.throttled || w.calls.Load() != s.compareCalls {
			t.Fatalf("step %d (%s as %s): error %v, AuthRefused %d, AuthThrottled %d, comparisons %d; want success %v, %d, %d, %d",
				i, s.from, s.user, err, st.AuthRefused, st.AuthThrottled, w.calls.Load(), s.ok, s.refused, s.throttled, s.compareCalls)
		}
	}
	if n := strings.Count(logs.String(), "backing off"); n == 0 || n > eventBurst {
		t.Errorf("%d log lines for the refusals, want 1 to %d", n, eventBurst)
	}
}

// TestBrokerBackoffTable checks the back-off's durations, its forgetting
// and its bound.
func TestBrokerBackoffTable(t *testing.T) {
	clock := newTestClock()
	bt := newBackoffTable(clock.Now)
	var got []time.Duration
	for range 9 {
		bt.failed("a")
		got = append(got, bt.by["a"].until.Sub(clock.Now()))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("back-offs %v, want %v seconds", got, want)
		}
	}
	// A quiet minute past the back-off forgets the failures.
	clock.advance(2*time.Minute + time.Second)
	bt.failed("a")
	if d := bt.by["a"].until.Sub(clock.Now()); d != time.Second {
		t.Errorf("back-off after a quiet spell %v, want 1s", d)
	}
	bt.succeeded("a")
	if bt.blocked("a") {
		t.Error("a success did not end the back-off")
	}
	for i := range 3 * maxBackoffAddrs {
		bt.failed(fmt.Sprint(i))
		if len(bt.by) > maxBackoffAddrs {
			t.Fatalf("%d addresses held, at most %d", len(bt.by), maxBackoffAddrs)
		}
	}
}

// TestBrokerOneBcryptAtATime: concurrent logins from many addresses check
// one password at a time, and every one is answered.
func TestBrokerOneBcryptAtATime(t *testing.T) {
	users := []BrokerUser{{Username: "dev", PasswordHash: hashAt(t, "pw", 6), ProductKey: "p", DeviceKey: "dev"}}
	b, _ := startTestBroker(t, BrokerOptions{Users: users})
	w := watchCompare(b)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "wrong"
			if i%4 == 0 {
				pw = "pw"
			}
			_, errs[i] = dial3From(t, b.URL(), fmt.Sprintf("127.0.0.%d", 10+i), fmt.Sprintf("c%d-%s", i, suffix()), "dev", pw)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err == nil) != (i%4 == 0) {
			t.Errorf("login %d: error %v", i, err)
		}
	}
	if most := w.most.Load(); most != 1 {
		t.Errorf("%d password checks ran at once, want 1", most)
	}
	if s := b.Stats(); s.AuthRefused != n-n/4 || s.AuthThrottled != 0 {
		t.Errorf("AuthRefused %d, AuthThrottled %d; want %d and 0", s.AuthRefused, s.AuthThrottled, n-n/4)
	}
}

// TestBrokerUnknownUserCostsAsMuch: a failed login costs a bcrypt check at
// the highest cost of the users' hashes whether the user exists or not,
// so that timing does not tell user names; hashes too costly to check are
// refused.
func TestBrokerUnknownUserCostsAsMuch(t *testing.T) {
	const high = 6
	b, _ := startTestBroker(t, BrokerOptions{Users: []BrokerUser{
		{Username: "low", PasswordHash: hashAt(t, "pw", bcrypt.MinCost), ProductKey: "p", DeviceKey: "low"},
		{Username: "high", PasswordHash: hashAt(t, "pw", high), ProductKey: "p", DeviceKey: "high"},
		{Username: "clear", Password: "pwc", ProductKey: "p", DeviceKey: "clear"},
	}})
	if c, _ := bcrypt.Cost(b.auth.dummy); c != high {
		t.Fatalf("the hash checked for unknown users has cost %d, want %d", c, high)
	}
	w := watchCompare(b)
	for i, tc := range []struct{ user, password string }{{"nobody", "x"}, {"clear", "wrong"}, {"high", "wrong"}} {
		if _, err := dial3From(t, b.URL(), fmt.Sprintf("127.0.0.%d", 20+i), "c-"+suffix(), tc.user, tc.password); err == nil {
			t.Fatalf("%s logged in with a wrong password", tc.user)
		}
		if c := w.lastCost(); c != high {
			t.Errorf("a failed login as %s cost a check at cost %d, want %d", tc.user, c, high)
		}
	}
	if w.calls.Load() != 3 {
		t.Errorf("%d checks for 3 failures", w.calls.Load())
	}
	costly := strings.Replace(hashAt(t, "pw", bcrypt.MinCost), "$04$", "$16$", 1)
	if _, err := newAccount(BrokerUser{Username: "slow", PasswordHash: costly}); err == nil || !strings.Contains(err.Error(), "cost 16") {
		t.Errorf("a cost-16 hash: error %v", err)
	}
}
