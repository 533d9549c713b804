package modbus_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	mb "github.com/simonvetter/modbus"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/devsim/devsimtest"
	"github.com/sluice-edge/sluice/connectors/modbus"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/connectors/windfarm"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

const waitFor = 30 * time.Second

// lateTransport lets the arbiter be opened before the downlink that needs
// its tracker.
type lateTransport struct{ dl atomic.Pointer[mqtt.Downlink] }

func (l *lateTransport) Ready(ctx context.Context) error { return l.dl.Load().Ready(ctx) }
func (l *lateTransport) Deliver(ctx context.Context, c control.Record) error {
	return l.dl.Load().Deliver(ctx, c)
}

// plant is the command path of a test: an embedded broker, simulated
// turbines that answer commands, the arbiter and the EnOS downlink.
type plant struct {
	sim     *devsim.Sim
	arbiter *control.Arbiter
	url, pk string
	acked   chan string // ids of acked commands
}

var plantSeq atomic.Int64

func newPlant(t testing.TB) *plant {
	t.Helper()
	b, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	p := &plant{url: b.URL(), pk: fmt.Sprintf("mb%d", plantSeq.Add(1)), acked: make(chan string, 1<<16)}
	p.sim = devsimtest.Answering(t, devsim.Config{URLs: []string{p.url}, ClientID: "dev-" + p.pk, ProductKey: p.pk, Devices: 2,
		Payloads: 40, Seed: 11, Start: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	lt := &lateTransport{}
	p.arbiter, err = control.Open(control.Options{Dir: t.TempDir(), Transport: lt, Timeout: 10 * time.Second, NoSync: true,
		OnTransition: func(tr control.Transition) {
			if tr.To == command.Acked && tr.From != command.Acked {
				select {
				case p.acked <- tr.ID:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.arbiter.Close() })
	dl, err := mqtt.NewDownlink(mqtt.DownlinkOptions{Tracker: p.arbiter.Tracker(),
		Client: mqtt.ClientOptions{URLs: []string{p.url}, ClientID: "dl-" + p.pk, CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dl.Close() })
	lt.dl.Store(dl)
	if err := dl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// start starts a server on a free loopback port and returns a connected
// client of the same library.
func start(t testing.TB, opts modbus.Options) (*modbus.Server, *mb.ModbusClient) {
	t.Helper()
	var s *modbus.Server
	var err error
	for range 10 { // the library does not say which port it bound: pick a free one
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		opts.Listen = l.Addr().String()
		_ = l.Close()
		if s, err = modbus.New(opts); err != nil {
			t.Fatal(err)
		}
		if err = s.Start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + opts.Listen, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return s, c
}

// turbineMap maps T0001's power (float32 at 0), wind speed (hundredths
// in a uint16 at 2), power limit (uint16 at 100, tenths in a low-first
// uint32 at 102) and a run coil.
func turbineMap(pk string) []modbus.Entry {
	return []modbus.Entry{
		{Table: modbus.HoldingRegisters, Address: 0, Product: pk, Asset: "T0001", Point: "power", Type: modbus.Float32},
		{Table: modbus.HoldingRegisters, Address: 2, Product: pk, Asset: "T0001", Point: "wind_speed", Scale: 0.01},
		{Table: modbus.HoldingRegisters, Address: 100, Product: pk, Asset: "T0001", Set: windfarm.PowerLimitPoint},
		{Table: modbus.HoldingRegisters, Address: 102, Product: pk, Asset: "T0002", Set: windfarm.PowerLimitPoint, Type: modbus.Uint32, Order: modbus.LowFirst, Scale: 0.1},
		{Table: modbus.HoldingRegisters, Address: 104, Product: pk, Asset: "T0002", Point: "power", Set: "power_setpoint", Type: modbus.Int16},
		{Table: modbus.HoldingRegisters, Address: 106, Product: pk, Asset: "T0002", Set: "pitch_limit", Type: modbus.Float32},
		{Table: modbus.Coils, Address: 0, Product: pk, Asset: "T0001", Point: "running", Set: "run"},
	}
}

// lastCommand waits for the newest third-party command to reach a final
// status.
func lastCommand(t *testing.T, a *control.Arbiter) control.Record {
	t.Helper()
	recs := a.List(control.Filter{Origin: control.OriginThirdParty})
	if len(recs) == 0 {
		t.Fatal("no third-party command")
	}
	newest := recs[0]
	for _, r := range recs {
		if r.Created.After(newest.Created) {
			newest = r
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	got, err := a.Wait(ctx, newest.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestWriteReachesDevice: a plant controller's write of a power limit
// becomes a third-party command through the arbiter to the simulated
// turbine, whose next measure points are capped; a read returns the
// latest value fed to the server.
func TestWriteReachesDevice(t *testing.T) {
	p := newPlant(t)
	srv, c := start(t, modbus.Options{Entries: turbineMap(p.pk), Submitter: p.arbiter})
	posts := subscribe(t, p.url, "/sys/"+p.pk+"/T0001/thing/measurepoint/post")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	// Before the write: 20 readings of T0001; the server is fed each.
	if _, err := p.sim.Run(ctx); err != nil {
		t.Fatal(err)
	}
	before := posts.wait(t, 20)
	above := 0
	for _, v := range before {
		if v["power"] > 150 {
			above++
		}
		srv.Update("T0001", "power", v["power"])
		srv.Update("T0001", "wind_speed", v["wind_speed"])
	}
	if above == 0 {
		t.Fatal("no reading above 150 kW before the write: the test proves nothing")
	}
	last := before[len(before)-1]
	if got, err := c.ReadFloat32(0, mb.HOLDING_REGISTER); err != nil || float64(got) != float64(float32(last["power"])) {
		t.Errorf("read power = %v, %v; want %v", got, err, last["power"])
	}
	if got, err := c.ReadRegister(2, mb.INPUT_REGISTER); err != nil || got != uint16(math.Round(last["wind_speed"]*100)) {
		t.Errorf("read wind speed = %v, %v; want %v hundredths", got, err, last["wind_speed"])
	}

	if err := c.WriteRegister(100, 150); err != nil {
		t.Fatal(err)
	}
	rec := lastCommand(t, p.arbiter)
	if rec.Status != command.Acked || rec.Asset != "T0001" || rec.Inputs[windfarm.PowerLimitPoint] != 150.0 ||
		!strings.HasPrefix(rec.Origin, "third-party:modbus@127.0.0.1") || control.OriginKind(rec.Origin) != control.OriginThirdParty {
		t.Fatalf("command %+v", rec)
	}
	if got := p.sim.SetPoints("T0001")[windfarm.PowerLimitPoint]; got != 150 {
		t.Errorf("device power_limit = %v", got)
	}
	if got, err := c.ReadRegister(100, mb.HOLDING_REGISTER); err != nil || got != 150 {
		t.Errorf("a write-only register reads back %v, %v; want 150", got, err)
	}

	// After: every next reading of T0001 is capped.
	if _, err := p.sim.Run(ctx); err != nil {
		t.Fatal(err)
	}
	after := posts.wait(t, 20)
	for i, v := range after {
		if v["power"] > 150 {
			t.Errorf("reading %d after the write: power %v above 150", i, v["power"])
		}
	}

	// A two-register write: T0002's limit in tenths, low word first.
	c.SetEncoding(mb.BIG_ENDIAN, mb.LOW_WORD_FIRST)
	if err := c.WriteUint32(102, 12345); err != nil {
		t.Fatal(err)
	}
	if rec := lastCommand(t, p.arbiter); rec.Asset != "T0002" || rec.Inputs[windfarm.PowerLimitPoint] != 1234.5 || rec.Status != command.Acked {
		t.Errorf("command %+v", rec)
	}
	if st := srv.Stats(); st.Commands != 2 || st.Rejected != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestLeaseBlocksWrite: while a local operator holds T0001's lease, a
// Modbus write is rejected by the arbiter and answered with exception 0x06
// (server busy); nothing reaches the device.
func TestLeaseBlocksWrite(t *testing.T) {
	p := newPlant(t)
	srv, c := start(t, modbus.Options{Entries: turbineMap(p.pk), Submitter: p.arbiter})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := p.arbiter.TakeLease(ctx, control.LeaseRequest{Asset: "T0001", Holder: "local:hmi", Origin: control.OriginLocal,
		Class: control.ClassSafety, For: time.Minute, Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRegister(100, 10); !errors.Is(err, mb.ErrServerDeviceBusy) {
		t.Fatalf("write under a lease: %v, want server busy", err)
	}
	recs := p.arbiter.List(control.Filter{Origin: control.OriginThirdParty})
	if len(recs) != 1 || recs[0].Status != command.Rejected || !strings.Contains(recs[0].Reason, "local:hmi") {
		t.Errorf("records %+v", recs)
	}
	if _, ok := p.sim.SetPoints("T0001")[windfarm.PowerLimitPoint]; ok {
		t.Error("the device got the power limit")
	}
	if st := srv.Stats(); st.Rejected != 1 || st.Commands != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestHostileRequests: requests outside the map, of huge quantities, of
// half values, of non-numbers, of clients not allowed, and garbage bytes
// get Modbus exceptions or a closed connection; the server goes on
// serving.
func TestHostileRequests(t *testing.T) {
	p := newPlant(t)
	srv, c := start(t, modbus.Options{Entries: turbineMap(p.pk), Submitter: p.arbiter})
	srv.Update("T0001", "power", 1234.5)
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"read outside the map", func() error { _, err := c.ReadRegisters(50, 2, mb.HOLDING_REGISTER); return err }, mb.ErrIllegalDataAddress},
		{"read running past the map", func() error { _, err := c.ReadRegisters(0, 10, mb.HOLDING_REGISTER); return err }, mb.ErrIllegalDataAddress},
		{"read at the last address", func() error { _, err := c.ReadRegisters(0xffff, 1, mb.HOLDING_REGISTER); return err }, mb.ErrIllegalDataAddress},
		{"read of 125 registers", func() error { _, err := c.ReadRegisters(0, 125, mb.HOLDING_REGISTER); return err }, mb.ErrIllegalDataAddress},
		{"coils outside the map", func() error { _, err := c.ReadCoils(1, 2000); return err }, mb.ErrIllegalDataAddress},
		{"write outside the map", func() error { return c.WriteRegister(7, 1) }, mb.ErrIllegalDataAddress},
		{"write of a read-only point", func() error { return c.WriteRegister(0, 1) }, mb.ErrIllegalDataAddress},
		{"write of half a value", func() error { return c.WriteRegister(103, 1) }, mb.ErrIllegalDataAddress},
		{"write cut short", func() error { return c.WriteRegisters(102, []uint16{1}) }, mb.ErrIllegalDataAddress},
		{"write of a read-only coil", func() error { return c.WriteCoil(5, true) }, mb.ErrIllegalDataAddress},
		{"write of many coils outside the map", func() error { return c.WriteCoils(0, make([]bool, 1968)) }, mb.ErrIllegalDataAddress},
		{"write of many registers outside the map", func() error { return c.WriteRegisters(100, make([]uint16, 123)) }, mb.ErrIllegalDataAddress},
		{"write of NaN", func() error { return c.WriteRegisters(106, []uint16{0x7fc0, 0}) }, mb.ErrIllegalDataValue},
		{"write of infinity", func() error { return c.WriteRegisters(106, []uint16{0x7f80, 0}) }, mb.ErrIllegalDataValue},
		{"a good read still works", func() error {
			v, err := c.ReadFloat32(0, mb.HOLDING_REGISTER)
			if err == nil && v != 1234.5 {
				err = fmt.Errorf("read %v", v)
			}
			return err
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}

	// Raw frames the client library would not send.
	addr := srv.Addr()
	raw := []struct {
		name string
		pdu  []byte
		exc  byte // the exception code wanted; 0: any answer or a closed connection
	}{
		{"read of 65535 registers", []byte{0x03, 0x00, 0x00, 0xff, 0xff}, 0},
		{"read of 0 registers", []byte{0x03, 0x00, 0x00, 0x00, 0x00}, 0},
		{"read of coils past 65535", []byte{0x01, 0xff, 0xff, 0x00, 0x10}, 0x02},
		{"write count not matching the bytes", []byte{0x10, 0x00, 0x64, 0x00, 0x02, 0x02, 0x00, 0x01}, 0},
		{"unknown function", []byte{0x2b, 0x0e, 0x01, 0x00}, 0x01},
		{"empty", []byte{0x03}, 0},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := rawRequest(addr, tc.pdu)
			if tc.exc != 0 && (err != nil || len(resp) < 2 || resp[0] != tc.pdu[0]|0x80 || resp[1] != tc.exc) {
				t.Errorf("answer % x, %v; want exception %#x", resp, err, tc.exc)
			}
			if tc.exc == 0 && err == nil && (len(resp) < 1 || resp[0]&0x80 == 0) {
				t.Errorf("answer % x: not an exception", resp)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("\xff", 600)))
		_ = conn.SetReadDeadline(time.Now().Add(waitFor))
		_, _ = io.Copy(io.Discard, conn) // the server closes it
	})
	if v, err := c.ReadFloat32(0, mb.HOLDING_REGISTER); err != nil || v != 1234.5 {
		t.Errorf("after the hostile requests: read %v, %v", v, err)
	}
	if st := srv.Stats(); st.Exceptions < 12 || st.Commands != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestAllowList: a server that serves only listed clients answers others
// with exception 0x0B and submits nothing.
func TestAllowList(t *testing.T) {
	p := newPlant(t)
	srv, c := start(t, modbus.Options{Entries: turbineMap(p.pk), Submitter: p.arbiter,
		Allow: []netip.Prefix{netip.MustParsePrefix("10.0.5.0/24")}})
	// The connection of a client not allowed is closed at once: nothing
	// is answered, read or written.
	if v, err := c.ReadRegister(2, mb.HOLDING_REGISTER); err == nil {
		t.Errorf("read answered %d", v)
	}
	if err := c.WriteRegister(100, 5); err == nil {
		t.Error("write answered")
	}
	if st := srv.Stats(); st.Refused < 1 || st.Commands != 0 || st.Reads != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := len(p.arbiter.List(control.Filter{})); n != 0 {
		t.Errorf("%d commands submitted", n)
	}
}

// TestOptions: the server refuses unsafe or inconsistent options.
func TestOptions(t *testing.T) {
	good := []modbus.Entry{{Table: modbus.HoldingRegisters, Address: 0, Asset: "T1", Point: "p"}}
	cases := []struct {
		name string
		opts modbus.Options
		want string
	}{
		{"exposed without allow", modbus.Options{Listen: "0.0.0.0:502", Entries: good}, "no authentication"},
		{"exposed on a host name", modbus.Options{Listen: "plant-gw:502", Entries: good}, "no authentication"},
		{"bad listen", modbus.Options{Listen: "nonsense", Entries: good}, "listen"},
		{"bad port", modbus.Options{Listen: "127.0.0.1:99999", Entries: good}, "bad port"},
		{"overlap", modbus.Options{Entries: []modbus.Entry{
			{Table: modbus.HoldingRegisters, Address: 0, Asset: "T1", Point: "p", Type: modbus.Float32},
			{Table: modbus.HoldingRegisters, Address: 1, Asset: "T1", Point: "q"}}}, "overlaps"},
		{"past the end", modbus.Options{Entries: []modbus.Entry{{Table: modbus.HoldingRegisters, Address: 0xffff, Asset: "T1", Point: "p", Type: modbus.Uint32}}}, "past address 65535"},
		{"maps nothing", modbus.Options{Entries: []modbus.Entry{{Table: modbus.Coils, Address: 0, Asset: "T1"}}}, "maps nothing"},
		{"coil with a type", modbus.Options{Entries: []modbus.Entry{{Table: modbus.Coils, Asset: "T1", Set: "run", Type: modbus.Float32}}}, "coil"},
		{"asset with a slash", modbus.Options{Entries: []modbus.Entry{{Table: modbus.Coils, Asset: "T1/x", Set: "run"}}}, "holds"},
		{"unknown type", modbus.Options{Entries: []modbus.Entry{{Table: modbus.HoldingRegisters, Asset: "T1", Set: "x", Type: "float64"}}}, "unknown type"},
		{"too many entries", modbus.Options{Entries: make([]modbus.Entry, modbus.MaxEntries+1)}, "more than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := modbus.New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := modbus.New(modbus.Options{Listen: "0.0.0.0:502", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32")}, Entries: good}); err != nil {
		t.Errorf("exposed with an allow-list: %v", err)
	}
}

// rawRequest sends one Modbus TCP frame with the PDU and returns the
// answer's PDU (an error when the server closed the connection).
func rawRequest(addr string, pdu []byte) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	return exchange(conn, 7, pdu)
}

// exchange sends pdu on conn in a Modbus TCP frame of transaction tid
// for unit 1 and returns the answer's PDU.
func exchange(conn net.Conn, tid uint16, pdu []byte) ([]byte, error) {
	frame := binary.BigEndian.AppendUint16(nil, tid) // transaction
	frame = binary.BigEndian.AppendUint16(frame, 0)  // protocol
	frame = binary.BigEndian.AppendUint16(frame, uint16(len(pdu)+1))
	frame = append(frame, 1)
	frame = append(frame, pdu...)
	if _, err := conn.Write(frame); err != nil {
		return nil, err
	}
	head := make([]byte, 7)
	if _, err := io.ReadFull(conn, head); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(head[4:6]))
	if n < 1 || n > 260 {
		return nil, fmt.Errorf("length %d", n)
	}
	body := make([]byte, n-1)
	_, err := io.ReadFull(conn, body)
	return body, err
}

// posts collects the measure points of the posts on a topic.
type posts struct {
	mu   sync.Mutex
	vals []map[string]float64
	n    chan struct{}
	seen int
}

func subscribe(t *testing.T, url, topic string) *posts {
	t.Helper()
	p := &posts{n: make(chan struct{}, 1<<12)}
	u, _ := neturl.Parse(url)
	ready := make(chan struct{})
	var once sync.Once
	cm, err := autopaho.NewConnection(context.Background(), autopaho.ClientConfig{
		ServerUrls: []*neturl.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err == nil {
					once.Do(func() { close(ready) })
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: fmt.Sprintf("rec-%d", plantSeq.Add(1)),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				var m struct {
					Params struct {
						Measurepoints map[string]json.RawMessage `json:"measurepoints"`
					} `json:"params"`
				}
				vals := map[string]float64{}
				if json.Unmarshal(pr.Packet.Payload, &m) == nil {
					for k, raw := range m.Params.Measurepoints {
						var v float64
						if json.Unmarshal(raw, &v) != nil {
							var q struct{ Value float64 }
							_ = json.Unmarshal(raw, &q)
							v = q.Value
						}
						vals[k] = v
					}
				}
				p.mu.Lock()
				p.vals = append(p.vals, vals)
				p.mu.Unlock()
				p.n <- struct{}{}
				return true, nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cm.Disconnect(context.Background()) })
	select {
	case <-ready:
	case <-time.After(waitFor):
		t.Fatal("the subscriber did not subscribe")
	}
	return p
}

// wait returns the next n posts.
func (p *posts) wait(t *testing.T, n int) []map[string]float64 {
	t.Helper()
	deadline := time.After(waitFor)
	for i := range n {
		select {
		case <-p.n:
		case <-deadline:
			t.Fatalf("got %d posts, want %d", i, n)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.vals[p.seen : p.seen+n]
	p.seen += n
	return out
}
