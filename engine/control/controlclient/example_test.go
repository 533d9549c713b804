package controlclient_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlapi"
	"github.com/sluice-edge/sluice/engine/control/controlclient"
)

// echoDevice is a simulated device that acknowledges every command.
type echoDevice struct{ tracker *command.Tracker }

func (d *echoDevice) Ready(context.Context) error { return nil }

func (d *echoDevice) Deliver(_ context.Context, c control.Record) error {
	go d.tracker.Reply(c.ID, c.Target(), 200, "ok", nil)
	return nil
}

// An HMI on the edge takes control of a turbine: the cloud's set-point is
// refused while its lease lasts, the HMI's own command is executed.
func Example() {
	dir, _ := os.MkdirTemp("", "control-example")
	defer os.RemoveAll(dir)
	dev := &echoDevice{}
	arbiter, err := control.Open(control.Options{Dir: dir, Transport: dev})
	if err != nil {
		panic(err)
	}
	dev.tracker = arbiter.Tracker()
	defer arbiter.Close()
	srv, err := controlapi.Listen("127.0.0.1:0", "example-token", arbiter, nil, nil)
	if err != nil {
		panic(err)
	}
	defer srv.Close(time.Second)

	client := controlclient.New("http://"+srv.Addr(), "example-token", nil)
	ctx := context.Background()
	lease, err := client.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "hmi-1", Origin: "local:hmi",
		Class: control.ClassSafety, For: 10 * time.Minute})
	fmt.Println("lease:", lease.Holder, lease.Class, err)

	rec, err := client.Submit(ctx, control.Command{Product: "turbine", Asset: "T1", Origin: "cloud",
		Inputs: map[string]any{"power_setpoint": 1500}})
	fmt.Println("cloud:", rec.Status, errors.Is(err, control.ErrLeased))

	rec, err = client.Submit(ctx, control.Command{Product: "turbine", Asset: "T1", Origin: "local:hmi", Lease: "hmi-1",
		Inputs: map[string]any{"power_setpoint": 0}, IdempotencyKey: "stop-T1-1"})
	if err != nil {
		panic(err)
	}
	rec, err = client.Wait(ctx, rec.ID)
	fmt.Println("hmi:", rec.Status, err)
	// Output:
	// lease: hmi-1 safety <nil>
	// cloud: rejected true
	// hmi: acked <nil>
}
