package command_test

import (
	"fmt"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
)

// A command is sent, and its device never answers: the tracker times it
// out on its clock, and the audit shows the way it went.
func Example() {
	clock := command.NewManualClock(time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC))
	tr := command.New(command.Options{Clock: clock, Timeout: 30 * time.Second})
	defer tr.Close()

	c, _ := tr.Submit(command.Command{ID: "c1", Product: "turbine", Asset: "T0007",
		Service: command.SetPoints, Inputs: map[string]any{"power_limit": 1500}})
	clock.Advance(time.Second)
	tr.Sent(c.ID) // the transport handed it to the broker
	clock.Advance(30 * time.Second)

	got, _ := tr.Get("c1")
	fmt.Println(got.Status, got.Reason)
	for _, t := range tr.Audit("c1") {
		fmt.Println(t.At.Format("15:04:05"), t.From, "->", t.To)
	}
	// Output:
	// timeout no reply within 30s
	// 08:00:00  -> accepted
	// 08:00:01 accepted -> sent
	// 08:00:31 sent -> timeout
}
