package devsim_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
)

// Three turbines post 30 measure-point payloads, acknowledged by the
// broker (QoS 1), while a plain subscriber counts them.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	broker, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	defer broker.Close()
	cfg := devsim.Config{URLs: []string{broker.URL()}, ProductKey: "turbine", Devices: 3, Payloads: 30, QoS: 1}
	counter, err := devsim.NewCounter(ctx, cfg, "/sys/turbine/+/thing/measurepoint/post")
	if err != nil {
		panic(err)
	}
	defer counter.Close()
	sim, err := devsim.New(cfg)
	if err != nil {
		panic(err)
	}
	st, err := sim.Run(ctx)
	if err != nil {
		panic(err)
	}
	_ = counter.Wait(ctx, st.Sent)
	fmt.Println(sim.DeviceKeys(), st.Sent, st.Acked, st.Points, counter.Count())
	// Output: [T0001 T0002 T0003] 30 30 300 30
}
