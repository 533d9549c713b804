package sim_test

import (
	"fmt"
	"os"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
)

func ExampleFarm_Fill() {
	farm := sim.NewFarm(sim.Config{Turbines: 2, Interval: 10 * time.Second, Seed: 1})
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, farm.Schema())
	defer rb.Release()
	farm.Fill(rb, 4) // two steps of two turbines
	rec := rb.NewRecord()
	defer rec.Release()
	os.Stdout.Write(codec.AppendJSONLines(nil, rec))
	// Output:
	// {"time":"2024-01-01T00:00:00.000Z","asset":"T0001","wind_speed":2.61,"power":0,"rotor_rpm":0.66,"pitch_angle":11.41,"nacelle_temp":19.88,"gearbox_temp":33.91,"generator_temp":38.08,"ambient_temp":8.82,"yaw_error":-3.84,"vibration":0.67}
	// {"time":"2024-01-01T00:00:00.000Z","asset":"T0002","wind_speed":8.14,"power":596.78,"rotor_rpm":11.62,"pitch_angle":0.48,"nacelle_temp":23.04,"gearbox_temp":45.94,"generator_temp":52.53,"ambient_temp":6.33,"yaw_error":2.13,"vibration":1.18}
	// {"time":"2024-01-01T00:00:10.000Z","asset":"T0001","wind_speed":2.18,"power":0,"rotor_rpm":0.8,"pitch_angle":11.35,"nacelle_temp":20.03,"gearbox_temp":33.87,"generator_temp":37.98,"ambient_temp":8.9,"yaw_error":-4.81,"vibration":0.59}
	// {"time":"2024-01-01T00:00:10.000Z","asset":"T0002","wind_speed":7.46,"power":460.14,"rotor_rpm":11.04,"pitch_angle":0.25,"nacelle_temp":23.09,"gearbox_temp":45.77,"generator_temp":52.36,"ambient_temp":6.38,"yaw_error":2.29,"vibration":0.96}
}

func ExampleFarm_AppendEnOS() {
	farm := sim.NewFarm(sim.Config{Turbines: 1000, Seed: 1})
	// The payload a turbine would post on
	// /sys/{productKey}/T0042/thing/measurepoint/post.
	payload := farm.AppendEnOS(nil, 41)
	fmt.Printf("%s (%d bytes)\n", payload, len(payload))
	// Output:
	// {"id":"0","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"wind_speed":5.16,"power":129.62,"rotor_rpm":8.39,"pitch_angle":0.39,"nacelle_temp":20.55,"gearbox_temp":36.1,"generator_temp":40.64,"ambient_temp":7.05,"yaw_error":3.03,"vibration":0.75},"time":1704067200000}} (298 bytes)
}
