package mqtt_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
)

// A downlink sets a measure point of a simulated turbine through an
// embedded broker and waits for the turbine's reply.
func Example_downlink() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	broker, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	defer broker.Close()

	farm, _ := devsim.New(devsim.Config{URLs: []string{broker.URL()}, ProductKey: "turbine", Devices: 2})
	stop, err := farm.Answer(ctx)
	if err != nil {
		panic(err)
	}
	defer stop()

	dl, _ := mqtt.NewDownlink(mqtt.DownlinkOptions{Client: mqtt.ClientOptions{URLs: []string{broker.URL()}, ClientID: "hmi"}})
	defer dl.Close()
	if err := dl.Start(ctx); err != nil {
		panic(err)
	}
	cmd, err := dl.SetPoints(ctx, "turbine", "T0002", map[string]any{"power_limit": 1500})
	if err != nil {
		panic(err)
	}
	done, _ := dl.Tracker().Wait(ctx, cmd.ID)
	fmt.Println(done.Status, done.Code, farm.SetPoints("T0002")["power_limit"])
	// Output: acked 200 1500
}

func ExampleParseTopic() {
	for _, topic := range []string{
		"/sys/turbine/T0001/thing/measurepoint/post",
		"/sys/turbine/T0001/thing/measurepoint/resume/batch",
		"/sys/turbine/T0001/thing/service/measurepoint/set_reply",
		"plant/north/T0001",
	} {
		t := codec.ParseTopic(topic)
		fmt.Printf("%s %q history=%v service=%q of=%s\n", t.Kind, t.DeviceKey, t.Kind.History(), t.Service, t.Of)
	}
	// Output:
	// post "T0001" history=false service="" of=other
	// resume/batch "T0001" history=true service="" of=other
	// reply "T0001" history=false service="measurepoint.set" of=service
	// other "" history=false service="" of=other
}

func ExampleAppendReply() {
	fmt.Println(string(codec.AppendReply(nil, "42", codec.CodeOK, "")))
	fmt.Println(string(codec.AppendReply(nil, "43", codec.CodeBadRequest, `power: float64 column got a string`)))
	// Output:
	// {"id":"42","code":200,"data":{}}
	// {"id":"43","code":400,"message":"power: float64 column got a string","data":{}}
}
