package modbus_test

import (
	"fmt"
	"net"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/sluice-edge/sluice/connectors/modbus"
)

// A plant controller reads a turbine's latest power (a float32 in holding
// registers 0-1) and its wind speed in hundredths (register 2). Writes
// would need a Submitter, the control arbiter: without one they are
// answered with exception 0x04.
func Example() {
	l, _ := net.Listen("tcp", "127.0.0.1:0") // a free port for the example
	addr := l.Addr().String()
	_ = l.Close()
	srv, err := modbus.New(modbus.Options{Listen: addr, Entries: []modbus.Entry{
		{Table: modbus.HoldingRegisters, Address: 0, Asset: "T0001", Point: "power", Type: modbus.Float32},
		{Table: modbus.HoldingRegisters, Address: 2, Asset: "T0001", Point: "wind_speed", Scale: 0.01},
		{Table: modbus.HoldingRegisters, Address: 3, Asset: "T0001", Set: "power_limit"},
	}})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.Update("T0001", "power", 1500.5) // what the modbus sink does with each row
	srv.Update("T0001", "wind_speed", 11.27)

	c, _ := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + addr, Timeout: 5 * time.Second})
	if err := c.Open(); err != nil {
		panic(err)
	}
	defer c.Close()
	power, _ := c.ReadFloat32(0, mb.HOLDING_REGISTER)
	wind, _ := c.ReadRegister(2, mb.HOLDING_REGISTER)
	err = c.WriteRegister(3, 800)
	fmt.Println(power, wind, err)
	// Output: 1500.5 1127 server device failure
}
