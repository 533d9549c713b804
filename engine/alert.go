package engine

// AlertSchema is the schema of alert records, shared by every component that
// produces or consumes alerts (the alert operator, engine health alerts,
// buffer drop alerts). One row is one state change of one alert:
//
//   - time: event time of the change (occur_time when raised, recover_time when cleared)
//   - id: stable alert id, the same on the raise and on the clear record
//   - asset: the asset (key) the alert is about
//   - rule: the rule name
//   - severity: critical, major, minor, warning or info
//   - type: the alert type declared by the rule
//   - content: the rendered content template
//   - value: the value that triggered (or cleared) the alert
//   - occur_time, recover_time: when the condition started to hold and
//     when it stopped (null while raised)
//   - state: "raised" or "cleared"
var AlertSchema = MustSchema([]Field{
	{Name: "time", Type: Timestamp},
	{Name: "id", Type: String},
	{Name: "asset", Type: String},
	{Name: "rule", Type: String},
	{Name: "severity", Type: String},
	{Name: "type", Type: String},
	{Name: "content", Type: String},
	{Name: "value", Type: Float64},
	{Name: "occur_time", Type: Timestamp},
	{Name: "recover_time", Type: Timestamp},
	{Name: "state", Type: String},
}, "time", "asset")

// Severities lists alert severities from most to least severe.
var Severities = []string{"critical", "major", "minor", "warning", "info"}

// Alert states.
const (
	AlertRaised  = "raised"
	AlertCleared = "cleared"
)
