package postgres_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sluice-edge/sluice/connectors/postgres"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkPublish inserts into a table of the local PostgreSQL server:
// the default cases, and json, where each row is a message and a row of
// the table.
func BenchmarkPublish(b *testing.B) {
	local(b).Close()
	cases := append(slices.Clone(outboundtest.DefaultBenchCases), outboundtest.BenchCase{Encoding: outbound.JSON, BatchRows: 1})
	outboundtest.BenchPublish(b, cases, func(b *testing.B, c outboundtest.BenchCase) *outbound.Publisher {
		table := "sluice_bench_" + outboundtest.Suffix()
		p := build(b, fmt.Sprintf("table: %s\nencoding: %s", table, c.Encoding))
		b.Cleanup(func() {
			_ = p.Close()
			db := local(b)
			defer db.Close()
			_, _ = db.Exec(`DROP TABLE IF EXISTS ` + postgres.QuoteTable(table))
		})
		return p
	})
}
