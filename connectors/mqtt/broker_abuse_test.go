package mqtt

import (
	"testing"
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
