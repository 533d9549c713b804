package ops

import (
	"fmt"
	"slices"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
)

// SchemaOptions override what the buffer's files say about its schema.
type SchemaOptions struct {
	// Time and Key name the event-time and key columns. A schema read from
	// a segment carries both; one read from the WAL carries neither (the
	// first timestamp column is taken as the time, and there is no key).
	Time, Key string
}

// resolveSchema returns the buffer's schema from an inspection, with the
// overrides applied. It fails when no file tells the schema or when the
// files disagree (opening the buffer with the wrong schema would
// quarantine every WAL record as undecodable).
func resolveSchema(in *buffer.Inspection, so SchemaOptions) (*engine.Schema, error) {
	s := in.Schema
	if s == nil {
		return nil, fmt.Errorf("%s: no segment or WAL record tells the buffer's schema (empty buffer?)", in.Dir)
	}
	if w := in.WALSchema; w != nil && !sameFields(s, w) {
		return nil, fmt.Errorf("%s: the segments hold columns %s but the WAL holds %s; refusing to open the buffer with either", in.Dir, s, w)
	}
	timeName, key := s.Time, s.Key
	if so.Time != "" {
		timeName = so.Time
	}
	if so.Key != "" {
		key = so.Key
	}
	if timeName != s.Time || key != s.Key {
		ns, err := engine.NewSchema(s.Fields, timeName, key)
		if err != nil {
			return nil, err
		}
		s = ns
	}
	return s, nil
}

func sameFields(a, b *engine.Schema) bool { return slices.Equal(a.Fields, b.Fields) }
