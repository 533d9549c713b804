package agent

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseControl(t *testing.T) {
	c, errs := ParseConfig("/etc/sluice/sluice.yaml", []byte("edge: e1\ntrust: k\ncontrol: {broker: tcp://127.0.0.1:1883}\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cc := c.Control
	if cc == nil || cc.BrokerURL != "tcp://127.0.0.1:1883" || cc.ClientID != "sluice-control-e1" || cc.Timeout != DefaultControlTimeout ||
		cc.MaxExpiry != DefaultControlMaxExpiry || len(cc.Classes) != 0 || len(cc.Origins) != 0 || cc.NoSync ||
		c.ControlDir() != "/etc/sluice/sluice-data/control" {
		t.Errorf("%+v", cc)
	}
	c, errs = ParseConfig("x.yaml", []byte("trust: k\ncontrol: {broker: \"tcp://b:1\", json_devices: [{command_topic: \"plant/{asset}/cmd\", assets: [P1, P2]}, "+
		"{command_topic: \"plc/{product}/{asset}/set/{point}\", reply_topic: \"plc/{product}/{asset}/ack\", products: [pump]}]}\n"))
	want := []ControlJSONDevices{{CommandTopic: "plant/{asset}/cmd", ReplyTopic: "plant/{asset}/cmd/reply", Assets: []string{"P1", "P2"}, Products: []string{}},
		{CommandTopic: "plc/{product}/{asset}/set/{point}", ReplyTopic: "plc/{product}/{asset}/ack", Assets: []string{}, Products: []string{"pump"}}}
	if len(errs) > 0 || !reflect.DeepEqual(c.Control.JSONDevices, want) {
		t.Errorf("json_devices: %v\n%#v", errs, c.Control.JSONDevices)
	}
	if c, _ := ParseConfig("x.yaml", []byte("trust: k\n")); c.Control != nil {
		t.Error("a control section out of nothing")
	}
	c, errs = ParseConfig("x.yaml", []byte("trust: k\ncontrol: {broker: \"mqtts://b:8883\", timeout: 5s, classes: [a, b], origins: {local: a, cloud: b}, no_sync: true}\n"))
	if len(errs) > 0 || c.Control.Timeout != 5*time.Second || len(c.Control.Classes) != 2 || c.Control.Origins["cloud"] != "b" || !c.Control.NoSync {
		t.Errorf("%v %+v", errs, c)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"control: {}\n", `"broker"`},
		{"control: {broker: nonsense}\n", "control.broker: want tcp://"},
		{"control: {broker: \"http://x:1\"}\n", "control.broker: want tcp://"},
		{"control: {broker: \"tcp://x:1\", password: p}\n", "needs control.username"},
		{"control: {broker: \"tcp://x:1\", timeout: 1h}\n", "control.timeout must be"},
		{"control: {broker: \"tcp://x:1\", max_expiry: 1s}\n", "control.max_expiry must be"},
		{"control: {broker: \"tcp://x:1\", classes: [a, a]}\n", "listed twice"},
		{"control: {broker: \"tcp://x:1\", classes: [a, b]}\n", "needs control.origins"},
		{"control: {broker: \"tcp://x:1\", origins: {cloud: god}}\n", `unknown class "god"`},
		{"control: {broker: \"tcp://x:1\", origins: {martian: rule}}\n", `unknown origin "martian"`},
		{"control: {broker: \"tcp://x:1\", json_devices: [{assets: [P1]}]}\n", `"command_topic"`},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"plant/{asset}/cmd\"}]}\n", "name the assets or products reached over"},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"plant/cmd\", assets: [P1]}]}\n", "json_devices[0].command_topic"},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"plant/{asset}/cmd\", reply_topic: \"plant/{asset}/{point}\", assets: [P1]}]}\n", "matches the command topic"},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"plant/{asset}/cmd\", assets: [\"a/b\"]}]}\n", "json_devices[0].assets"},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"a/{asset}/cmd\", assets: [P1]}, {command_topic: \"b/{asset}/cmd\", assets: [P1]}]}\n", `asset "P1" is already reached over "a/{asset}/cmd"`},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"a/{asset}/cmd\", products: [pk]}, {command_topic: \"b/{asset}/cmd\", products: [pk]}]}\n", `product "pk" is already reached`},
		{"control: {broker: \"tcp://x:1\", json_devices: [{command_topic: \"a/{asset}/cmd\", assets: [P1]}, {command_topic: \"a/{asset}/cmd/reply\", assets: [P2]}]}\n", "overlap those of"},
	} {
		_, errs := ParseConfig("x.yaml", []byte("trust: k\n"+bad.yaml))
		if len(errs) == 0 || !strings.Contains(errs.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.yaml, errs, bad.want)
		}
	}
}
