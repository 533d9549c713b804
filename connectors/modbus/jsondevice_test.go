package modbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/devsim/devsimtest"
	"github.com/sluice-edge/sluice/connectors/modbus"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// TestWriteReachesJSONDevice: a plant controller's write of several
// set-points of a device that is reached over a generic JSON command
// topic (a control.Router in front of the EnOS and the JSON downlinks, as
// the edge's control section builds it) becomes one third-party command
// per point, each acknowledged by the device on its reply topic; the
// device holds the values written. A write to an EnOS device of the same
// request stays one command.
func TestWriteReachesJSONDevice(t *testing.T) {
	b, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pk := fmt.Sprintf("mbj%d", plantSeq.Add(1))
	topic := "plc/" + pk + "/{asset}/set"
	sim := devsimtest.Answering(t, devsim.Config{URLs: []string{b.URL()}, ClientID: "dev-" + pk, ProductKey: pk, Devices: 2, CommandTopic: topic})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	late := &control.LateTransport{}
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: late, Timeout: 10 * time.Second, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	enos, err := mqtt.NewDownlink(mqtt.DownlinkOptions{Tracker: a.Tracker(),
		Client: mqtt.ClientOptions{URLs: []string{b.URL()}, ClientID: "dl-" + pk, CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enos.Close() })
	jdl, err := mqtt.NewJSONDownlink(mqtt.JSONDownlinkOptions{Tracker: a.Tracker(), Topic: topic,
		Client: mqtt.ClientOptions{URLs: []string{b.URL()}, ClientID: "jdl-" + pk, CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jdl.Close() })
	router, err := control.NewRouter(enos, control.Route{Name: "json", Assets: []string{"T0002"}, Transport: jdl})
	if err != nil {
		t.Fatal(err)
	}
	late.Set(router)

	entries := []modbus.Entry{
		{Table: modbus.HoldingRegisters, Address: 0, Product: pk, Asset: "T0001", Set: "a"},
		{Table: modbus.HoldingRegisters, Address: 1, Product: pk, Asset: "T0001", Set: "b"},
		{Table: modbus.HoldingRegisters, Address: 2, Product: pk, Asset: "T0002", Set: "c"},
		{Table: modbus.HoldingRegisters, Address: 3, Product: pk, Asset: "T0002", Set: "d"},
	}
	srv, c := start(t, modbus.Options{Entries: entries, Submitter: a})
	if err := c.WriteRegisters(0, []uint16{11, 12, 13, 14}); err != nil {
		t.Fatal(err)
	}
	recs := a.List(control.Filter{Origin: control.OriginThirdParty})
	got := map[string]int{}
	for _, r := range recs {
		done, err := a.Wait(ctx, r.ID)
		if err != nil || done.Status != command.Acked {
			t.Fatalf("%s: %s %q %v", r.ID, done.Status, done.Reason, err)
		}
		got[r.Asset] += 1
		if r.Asset == "T0002" && len(r.Inputs) != 1 {
			t.Errorf("a command for the JSON device sets %v", r.Inputs)
		}
	}
	if got["T0001"] != 1 || got["T0002"] != 2 {
		t.Errorf("commands per asset %v, want T0001:1 T0002:2", got)
	}
	for dev, want := range map[string]map[string]float64{"T0001": {"a": 11, "b": 12}, "T0002": {"c": 13, "d": 14}} {
		for p, v := range want {
			if sp := sim.SetPoints(dev)[p]; sp != v {
				t.Errorf("%s.%s = %v, want %v", dev, p, sp, v)
			}
		}
	}
	if st := srv.Stats(); st.Commands != 3 || st.Rejected != 0 || st.Writes != 1 {
		t.Errorf("stats %+v", st)
	}
}
