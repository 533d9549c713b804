package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// metadataCases are metadata maps whose JSON encoding/json writes in
// every way it can: nil and empty maps, keys to sort, every escape.
var metadataCases = []struct {
	name string
	md   message.Metadata
}{
	{"nil", nil},
	{"empty", message.Metadata{}},
	{"sorted keys", message.Metadata{"z": "1", "a": "2", "m": "", "A": "3", "aa": "4", "": "empty key"}},
	{"quote and backslash", message.Metadata{`k"\`: `v"\"\\`}},
	{"html", message.Metadata{"<k>": "<script>&amp;</script>"}},
	{"short escapes", message.Metadata{"c": "\b\f\n\r\t"}},
	{"control characters", message.Metadata{"c": "\x00\x01\x0b\x1f\x7f"}},
	{"line and paragraph separators", message.Metadata{"s": "a\u2028b\u2029c\u2027"}},
	{"invalid utf-8", message.Metadata{"bad\xff": "\xc3\x28 \xe2\x82 \xf0\x9f\x98 \xed\xa0\x80 end\xc3"}},
	{"multibyte", message.Metadata{"ünï": "€ 😀 日本"}},
	{"long", message.Metadata{"id": strings.Repeat("x", 5000), "edge": "site-a", "first": "18446744073709551615"}},
	{"more entries than the stack holds", func() message.Metadata {
		md := message.Metadata{}
		for i := range 40 {
			md[fmt.Sprintf("k%d", (i*7)%40)] = fmt.Sprint(i)
		}
		return md
	}()},
}

// TestAppendMetadataMatchesEncodingJSON: the metadata column holds the
// bytes encoding/json.Marshal writes for every metadata map.
func TestAppendMetadataMatchesEncodingJSON(t *testing.T) {
	for _, c := range metadataCases {
		t.Run(c.name, func(t *testing.T) {
			want, err := json.Marshal(c.md)
			if err != nil {
				t.Fatal(err)
			}
			got := appendMetadata([]byte("prefix"), c.md)
			if !bytes.Equal(got[len("prefix"):], want) {
				t.Errorf("got  %s\nwant %s", got[len("prefix"):], want)
			}
		})
	}
}

// FuzzAppendMetadata: any key and value encode as encoding/json encodes
// them.
func FuzzAppendMetadata(f *testing.F) {
	for _, c := range metadataCases {
		for k, v := range c.md {
			f.Add(k, v)
		}
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		md := message.Metadata{k: v, "k2": k + v}
		want, _ := json.Marshal(md)
		if got := appendMetadata(nil, md); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

// TestInsertQueryMatchesWatermill: the statement and arguments are
// Watermill's, with the ON CONFLICT clause added, for every number of
// messages and every metadata map.
func TestInsertQueryMatchesWatermill(t *testing.T) {
	for _, binary := range []bool{false, true} {
		s := Schema(binary)
		for _, n := range []int{1, 2, 3, 10, 334, 1000} {
			msgs := make(message.Messages, n)
			for i := range msgs {
				c := metadataCases[i%len(metadataCases)]
				msgs[i] = message.NewMessage(strings.Repeat("id", i%3)+string(rune('a'+i%26)), []byte(`{"v":`+strings.Repeat("1", i%7+1)+`}`))
				msgs[i].Metadata = c.md
			}
			params := wmsql.InsertQueryParams{Topic: "sluice-t.1", Msgs: msgs}
			got, err := s.InsertQuery(params)
			if err != nil {
				t.Fatal(err)
			}
			want, err := wmsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: QuoteTable}.InsertQuery(params)
			if err != nil {
				t.Fatal(err)
			}
			if w := want.Query + ` ON CONFLICT ("uuid") DO NOTHING`; got.Query != w {
				t.Fatalf("%d messages: statement\n%s\nwant\n%s", n, got.Query, w)
			}
			if len(got.Args) != len(want.Args) {
				t.Fatalf("%d messages: %d arguments, want %d", n, len(got.Args), len(want.Args))
			}
			for i := range got.Args {
				switch w := want.Args[i].(type) {
				case string:
					if g, ok := got.Args[i].(string); !ok || g != w {
						t.Fatalf("%d messages: argument %d is %T %v, want %q", n, i, got.Args[i], got.Args[i], w)
					}
				case []byte:
					if g, ok := got.Args[i].([]byte); !ok || !bytes.Equal(g, w) {
						t.Fatalf("%d messages: argument %d is %T %q, want %q", n, i, got.Args[i], got.Args[i], w)
					}
				default:
					t.Fatalf("Watermill's argument %d is a %T", i, w)
				}
			}
		}
	}
}

// BenchmarkInsertQuery builds the INSERT of 1,000 messages carrying the
// metadata a json-encoded row carries (one message per row): Watermill's
// arguments (encoding/json per message) against InsertQuery's.
func BenchmarkInsertQuery(b *testing.B) {
	const n = 1000
	msgs := make(message.Messages, n)
	for i := range msgs {
		id := fmt.Sprintf("site/raw/%d", 1000000+i)
		msgs[i] = message.NewMessage(id, []byte(`{"time":"2024-01-01T00:00:00.000Z","turbine":"WT0001","p0":1.25}`))
		msgs[i].Metadata = message.Metadata{
			"id": id, "edge": "site", "stream": "raw", "first": id[9:], "last": id[9:],
			"time_min": "2024-01-01T00:00:00.000Z", "time_max": "2024-01-01T00:00:00.000Z",
			"backfill": "false", "encoding": "json", "asset": "WT0001",
		}
	}
	params := wmsql.InsertQueryParams{Topic: "sluice_bench", Msgs: msgs}
	for _, c := range []struct {
		name string
		s    wmsql.SchemaAdapter
	}{
		{"watermill", wmsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: QuoteTable}},
		{"sluice", Schema(false)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.s.InsertQuery(params); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
			b.ReportMetric(float64(testing.AllocsPerRun(1, func() { _, _ = c.s.InsertQuery(params) }))/n, "allocs/row")
		})
	}
}
