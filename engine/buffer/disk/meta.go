package disk

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Meta is the buffer's description of itself (docs/format/buffer.md 1):
// the identity its rows are published under and its schema. It is
// written when the buffer is created, so that tools (export, status)
// learn them from the directory alone.
type Meta struct {
	Format int `json:"format"`
	// Edge and Stream name the rows in message IDs:
	// <edge>/<stream>/<sequence>.
	Edge   string `json:"edge,omitempty"`
	Stream string `json:"stream,omitempty"`
	// Schema is the stream schema as in the sluice.schema metadata of
	// segments.
	Schema  json.RawMessage `json:"schema"`
	Created time.Time       `json:"created"`
}

// maxMetaBytes bounds the meta file a reader accepts.
const maxMetaBytes = 1 << 20

// StreamSchema decodes the schema.
func (m *Meta) StreamSchema() (*engine.Schema, error) { return ParseSchemaJSON(string(m.Schema)) }

// NewMeta describes a buffer of schema s published as edge/stream.
func NewMeta(s *engine.Schema, edge, stream string, now time.Time) (*Meta, error) {
	js, err := SchemaJSON(s)
	if err != nil {
		return nil, err
	}
	return &Meta{Format: Version, Edge: edge, Stream: stream, Schema: json.RawMessage(js), Created: now.UTC()}, nil
}

// ReadMeta reads dir/meta; it returns nil, nil when there is none.
func ReadMeta(fsys FS, dir string) (*Meta, error) {
	name := path.Join(dir, MetaName)
	fi, err := fsys.Stat(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("buffer: read meta: %w", err)
	}
	if fi.Size() > maxMetaBytes {
		return nil, fmt.Errorf("buffer: %s is %d bytes, more than a meta file can be", name, fi.Size())
	}
	data, err := ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("buffer: read meta: %w", err)
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("buffer: %s: %w", name, err)
	}
	// The identity forms message IDs, subjects and file names: a name
	// the configuration would refuse is refused here too.
	for _, n := range []struct{ what, v string }{{"edge", m.Edge}, {"stream", m.Stream}} {
		if n.v == "" {
			continue // recorded without one
		}
		if err := outbound.CheckName(n.v); err != nil {
			return nil, fmt.Errorf("buffer: %s: bad %s: %w", name, n.what, err)
		}
	}
	return &m, nil
}

// WriteMeta publishes dir/meta atomically.
func WriteMeta(fsys FS, dir string, m *Meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(fsys, path.Join(dir, MetaName), append(data, '\n')); err != nil {
		return fmt.Errorf("buffer: write meta: %w", err)
	}
	return nil
}
