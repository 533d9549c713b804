// Package window implements the "window" step: event-time window statistics
// per key over tumbling, hopping or session windows.
//
// Rows are grouped by key and event time; each group keeps incremental
// aggregates (count, sum, avg, min, max, stddev, first, last and quantiles),
// so state grows with keys and open windows, never with rows. Windows close
// on the watermark — the smallest per-source maximum event time minus the
// allowed lateness — and are emitted in a deterministic order. Rows that
// arrive after all their windows have closed, and rows without event time,
// go to the "late" port and are counted.
//
// Results are bit-identical for any batch size and any arrival order within
// the allowed lateness: sums are exact (integer accumulation of the float64
// values, rounded once), quantile sketches hold exact bucket counts, and
// ties are broken by value. See docs/window.md for the semantics.
package window
