package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

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

// RuleSetVersionColumn is the string column of VersionedAlertSchema that
// names the version of the rule set whose rule raised the alert.
const RuleSetVersionColumn = "rule_set_version"

// VersionedAlertSchema is AlertSchema with a last string column,
// rule_set_version, naming the version of the rule set whose rule raised
// (and cleared) the alert; null for a rule of no versioned rule set. Alert
// steps whose rules come from versioned rule sets produce it; everything
// that carries alerts takes both schemas (see IsAlertSchema).
var VersionedAlertSchema = MustSchema(append(slices.Clone(AlertSchema.Fields),
	Field{Name: RuleSetVersionColumn, Type: String}), "time", "asset")

// IsAlertSchema reports whether s is the schema of alert records:
// AlertSchema or VersionedAlertSchema.
func IsAlertSchema(s *Schema) bool {
	return s != nil && (s.Equal(AlertSchema) || s.Equal(VersionedAlertSchema))
}

// AlertRecordAs returns the rows of rec, a record of one alert schema (see
// IsAlertSchema), as a record of the alert schema s: a column s has and
// rec lacks (rule_set_version) is null, a column rec has and s lacks is
// left out. The caller owns the record returned (rec itself, retained,
// when it already has schema s).
func AlertRecordAs(mem memory.Allocator, rec arrow.RecordBatch, s *Schema) (arrow.RecordBatch, error) {
	if !IsAlertSchema(s) {
		return nil, fmt.Errorf("alert record: %s is not an alert schema", s)
	}
	if rec.Schema().Equal(s.Arrow()) {
		rec.Retain()
		return rec, nil
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	n := int(rec.NumRows())
	cols := make([]arrow.Array, len(s.Fields))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, f := range s.Fields {
		idx := rec.Schema().FieldIndices(f.Name)
		switch {
		case len(idx) == 0:
			cols[i] = array.MakeArrayOfNull(mem, f.Type.Arrow(), n)
		case !arrow.TypeEqual(rec.Column(idx[0]).DataType(), f.Type.Arrow()):
			return nil, fmt.Errorf("alert record: column %s is %s, not %s", f.Name, rec.Column(idx[0]).DataType(), f.Type)
		default:
			cols[i] = rec.Column(idx[0])
			cols[i].Retain()
		}
	}
	return array.NewRecordBatch(s.Arrow(), cols, int64(n)), nil
}

// Severities lists alert severities from most to least severe.
var Severities = []string{"critical", "major", "minor", "warning", "info"}

// Alert states.
const (
	AlertRaised  = "raised"
	AlertCleared = "cleared"
)

// EngineAlert is an alert the engine raises about itself: rows a buffer
// dropped or lost, a full disk, rows arriving late in bulk.
type EngineAlert struct {
	// ID is the same on the raise and on the clear record.
	ID, Asset, Rule, Severity, Type, Content string
	Value                                    float64
	// State is AlertRaised or AlertCleared.
	State string
	// Occur is when the condition began; Recover when it ended (zero
	// while raised).
	Occur, Recover time.Time
}

// EngineAlertID is the id of an engine alert: its rule, the asset it is
// about and what tells the alert's episodes apart (a time, a range of
// rows), joined by "/". The raise and the clear of an episode share it.
func EngineAlertID(rule, asset, episode string) string {
	return rule + "/" + asset + "/" + episode
}

// Record builds the AlertSchema row of a. The caller owns the record.
func (a EngineAlert) Record(mem memory.Allocator) arrow.RecordBatch {
	rb := NewRecordBuilder(mem, AlertSchema)
	defer rb.Release()
	at := a.Occur
	if a.State == AlertCleared {
		at = a.Recover
	}
	for i, f := range AlertSchema.Fields {
		switch f.Name {
		case "time":
			rb.Timestamp(i).Append(arrow.Timestamp(at.UnixMilli()))
		case "occur_time":
			rb.Timestamp(i).Append(arrow.Timestamp(a.Occur.UnixMilli()))
		case "recover_time":
			if a.Recover.IsZero() {
				rb.Timestamp(i).AppendNull()
			} else {
				rb.Timestamp(i).Append(arrow.Timestamp(a.Recover.UnixMilli()))
			}
		case "id":
			rb.String(i).Append(a.ID)
		case "asset":
			rb.String(i).Append(a.Asset)
		case "rule":
			rb.String(i).Append(a.Rule)
		case "severity":
			rb.String(i).Append(a.Severity)
		case "type":
			rb.String(i).Append(a.Type)
		case "content":
			rb.String(i).Append(a.Content)
		case "value":
			rb.Float64(i).Append(a.Value)
		case "state":
			rb.String(i).Append(a.State)
		default:
			rb.Columns[i].AppendNull()
		}
	}
	rb.RowDone()
	return rb.NewRecord()
}

// AlertRoute takes engine alerts (AlertSchema records) to the sinks of a
// run that carry alerts, and reports how many took one.
type AlertRoute interface {
	Raise(rec arrow.RecordBatch) int
}

type alertRouteKey struct{}

// AlertRouteOf returns the alert route of the run sh belongs to, made by
// create when the run has none yet. The sinks that carry alerts make it.
func AlertRouteOf(sh *Shared, create func() AlertRoute) AlertRoute {
	return sh.Get(alertRouteKey{}, func() any { return create() }).(AlertRoute)
}

// RaiseAlert hands a to the alert route of sh's run and reports how many
// sinks took it: 0 when no sink carries alerts (the caller logs it then).
func RaiseAlert(sh *Shared, mem memory.Allocator, a EngineAlert) int {
	v, ok := sh.Lookup(alertRouteKey{})
	if !ok {
		return 0
	}
	rec := a.Record(mem)
	defer rec.Release()
	return v.(AlertRoute).Raise(rec)
}
