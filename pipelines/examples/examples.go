// Package examples embeds the example pipelines shipped with Sluice so the
// binary can run them with nothing else installed (`sluice demo`). Each
// example is validated and run by the test suite.
package examples

import "embed"

// FS holds the example pipeline files and their data.
//
//go:embed *.yaml data
var FS embed.FS

// WindFarm is the file name of the wind-farm example: simulated turbines ->
// one-minute window statistics per turbine -> alert rules.
const WindFarm = "windfarm.yaml"

// WindFarmCloud is the file name of the wind farm with a cloud sink:
// simulated turbines -> one-minute statistics -> alerts on stdout, the
// statistics to NATS JetStream through the nats sink's durable buffer.
const WindFarmCloud = "windfarm-cloud.yaml"

// WindFarmMQTT is the file name of the wind farm over MQTT: EnOS payloads
// from simulated devices -> one-minute statistics -> alert rules.
const WindFarmMQTT = "windfarm-mqtt.yaml"
