// Package mqtt connects Sluice to devices over MQTT 3.1.1 and 5.
//
// The "mqtt" source subscribes to device topics and decodes EnOS
// measure-point posts, JSON objects or CSV lines into rows (with the
// shared decoders of connectors/codec). At QoS 1 it acknowledges a message
// only once the Ack of the batch holding its rows completes — every effect
// durable in a sink or deliberately dropped — and it keeps a persistent
// session, so that what was not acknowledged is delivered again after a
// restart. Bad input is counted per device, answered on the EnOS _reply
// topic and logged with a rate limit; it never stops the source.
//
// The "mqtt" sink and Downlink send commands to EnOS devices (measure-point
// settings and service invocations on /sys/{productKey}/{deviceKey}/thing/
// service/...) and track each command's replies in a command.Tracker.
//
// StartBroker runs an MQTT broker inside the process, so that a pipeline
// needs nothing installed. codec.ParseTopic and the Append/Parse functions read
// and write the EnOS topics and payloads. See docs/mqtt.md.
package mqtt
