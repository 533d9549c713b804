package codec_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// schemaSpec is a component spec holding only the shared schema fields.
var schemaSpec = spec.Spec{Name: "test", Fields: append(codec.SchemaFields(), codec.TimeFields()...)}

// parseConfig parses YAML against schemaSpec.
func parseConfig(t testing.TB, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	cfg, errs := schemaSpec.Parse("test.yaml", &n)
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return cfg
}

// mapping builds a mapping from a YAML declaration.
func mapping(t testing.TB, src string) *codec.Mapping {
	t.Helper()
	m, err := codec.ParseMapping(parseConfig(t, src))
	if err != nil {
		t.Fatalf("mapping: %v", err)
	}
	return m
}

// decodeAll decodes payloads into one record and returns its rows and the
// error of each payload. It checks that the builder stays aligned after
// every payload and that the checked allocator is empty at the end.
func decodeAll(t testing.TB, d codec.Decoder, key string, payloads ...string) ([]enginetest.Row, []error) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rb := engine.NewRecordBuilder(mem, d.Schema())
	defer rb.Release()
	errs := make([]error, len(payloads))
	for i, p := range payloads {
		before := rb.Rows()
		n, err := d.Decode(rb, []byte(p), key)
		errs[i] = err
		if err != nil && rb.Rows() != before {
			t.Errorf("payload %d failed (%v) but the builder grew from %d to %d rows", i, err, before, rb.Rows())
		}
		if err == nil && rb.Rows() != before+n {
			t.Errorf("payload %d: %d rows reported, builder grew by %d", i, n, rb.Rows()-before)
		}
		checkAligned(t, rb)
	}
	rec := rb.NewRecord()
	if rec == nil {
		return nil, errs
	}
	defer rec.Release()
	return enginetest.Rows(rec), errs
}

func checkAligned(t testing.TB, rb *engine.RecordBuilder) {
	t.Helper()
	for i, c := range rb.Columns {
		if c.Len() != rb.Rows() {
			t.Fatalf("column %d (%s) has %d values, builder %d rows", i, rb.Schema.Fields[i].Name, c.Len(), rb.Rows())
		}
	}
}
