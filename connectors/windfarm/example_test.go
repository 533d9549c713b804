package windfarm_test

import (
	"fmt"

	"github.com/sluice-edge/sluice/connectors/windfarm"
)

// A power set-point caps a turbine's output from its next reading on: the
// blades pitch out and the load falls, the wind stays what it was.
func Example() {
	free := windfarm.New(windfarm.Config{Turbines: 1, Seed: 7})
	capped := windfarm.New(windfarm.Config{Turbines: 1, Seed: 7})
	capped.SetPowerLimit(0, 500)
	var a, b windfarm.Reading
	maxFree, maxCapped, sameWind := 0.0, 0.0, true
	for range 3600 {
		free.Next(0, &a)
		capped.Next(0, &b)
		maxFree = max(maxFree, a.Values[windfarm.Power])
		maxCapped = max(maxCapped, b.Values[windfarm.Power])
		sameWind = sameWind && a.Values[windfarm.WindSpeed] == b.Values[windfarm.WindSpeed]
	}
	limit, _ := capped.PowerLimit(0)
	fmt.Println(free.Asset(0), maxFree > limit, maxCapped <= limit, sameWind)
	// Output: T0001 true true true
}
