package examples

import "embed"

// Hub holds the release of the hub demo (`sluice demo --hub`): version 1
// under HubRelease (one pipeline of simulated turbines whose data and
// alerts go to the hub through nats sinks, and the rule set "turbine" with
// one rule), and under HubV2 the files version 2 replaces (the rule set
// with a second rule).
//
//go:embed hub
var Hub embed.FS

// Directories of Hub.
const (
	HubRelease = "hub/release"
	HubV2      = "hub/v2"
)
