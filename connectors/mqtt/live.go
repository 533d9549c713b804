package mqtt

import "github.com/sluice-edge/sluice/engine"

var (
	_ engine.LiveSource   = (*Source)(nil)
	_ engine.RangedSource = (*Source)(nil)
)

// Ranges returns the value ranges of the schema's model when the schema
// routes values out of range (schema.ranges route), or nil.
func (s *Source) Ranges() []engine.ValueRange { return s.ranges }

// Live reports that the source reads devices as they report, so that a
// pipeline checks its event times against the engine's clock; rows of
// resume topics (the history column) are history.
func (s *Source) Live() (bool, string) {
	if s.histCol >= 0 {
		return true, s.schema.Fields[s.histCol].Name
	}
	return true, ""
}
