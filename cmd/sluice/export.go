package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/buffer/ops"
)

func newExportCmd(g *globals) *cobra.Command {
	var (
		opts     ops.ExportOptions
		out      string
		from     uint64
		since    string
		until    string
		progress string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "export DIR --out OUTDIR",
		Short: "Write a buffer's backlog (or a slice of it) to Parquet files, e.g. for a USB stick",
		Long: `Export writes the undelivered rows of a sink's buffer directory to Parquet
files in OUTDIR, for sites whose link is down for long: carry them to the hub
and send them with ` + "`sluice replay`" + `.

Each file holds one run of consecutive sequences and is a plain zstd Parquet
file any Parquet reader opens: the stream's columns plus _seq (the row's
sequence) and _msg (the first sequence of the message holding the row), with
the metadata sluice.edge, sluice.stream, sluice.schema, sluice.first_seq and
sluice.last_seq. The edge and stream are the identity the buffer records,
which the engine publishes under. Replaying a file sends the rows in the
messages the forwarder sends, with the same IDs, so the receiver deduplicates
rows that also arrive over the link. A JSON summary of the files is written
beside them. Files are published atomically (.tmp, fsync, rename).

Select with --from/--until (sequences) or --since/--until (event time: RFC
3339, a date, or a duration meaning "that long ago"); a message with any
selected row is exported whole. The buffer keeps the rows: the cursor does
not move. Export only reads the buffer (it works on a full disk) and takes
its lock shared: stop the engine first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if out == "" {
				return &exitError{code: exitUsage, err: fmt.Errorf("export: --out is required")}
			}
			dir := args[0]
			opts.Log = log
			opts.FromSeq = from
			now := time.Now()
			if since != "" {
				if opts.Since, err = parseWhen(since, now); err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("--since: %w", err)}
				}
			}
			if until != "" {
				if n, err := strconv.ParseUint(until, 10, 64); err == nil {
					opts.ToSeq = n
				} else if opts.Until, err = parseWhen(until, now); err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("--until: a sequence or a time: %w", err)}
				}
			}
			bar := newProgressBar(g, progress, "export")
			opts.Progress = bar.update
			rep, err := ops.Export(cmd.Context(), dir, out, opts)
			bar.done()
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				return writeJSON(g.stdout, rep)
			}
			fmt.Fprintf(g.stdout, "exported %d rows (%s) of %s/%s in %d files to %s\n", rep.Rows, ops.Bytes(rep.Bytes), rep.Edge, rep.Stream, len(rep.Files), out)
			for _, f := range rep.Files {
				fmt.Fprintf(g.stdout, "  %s  %d rows  %s\n", f.Name, f.Rows, ops.Bytes(f.Bytes))
			}
			for _, c := range rep.Skipped {
				fmt.Fprintf(g.stdout, "  skipped (damaged): %s\n", c)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "output directory (created when missing)")
	f.Uint64Var(&from, "from", 0, "first sequence to export")
	f.StringVar(&since, "since", "", "earliest event time to export (RFC 3339, 2006-01-02, or a duration ago such as 48h)")
	f.StringVar(&until, "until", "", "last sequence, or event time to stop before")
	f.StringVar(&opts.Edge, "edge", "", "edge name in message IDs (default: the one the buffer records; needed only for buffers that record none)")
	f.StringVar(&opts.Stream, "stream", "", "stream name in message IDs (default: the one the buffer records)")
	f.Int64Var(&opts.RowsPerFile, "rows-per-file", 1<<20, "most rows per file (files end where a message ends)")
	f.StringVar(&opts.Time, "time", "", "event-time column (when the schema comes from the WAL only)")
	f.StringVar(&opts.Key, "key", "", "key column (when the schema comes from the WAL only)")
	f.StringVar(&progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), always or never")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// parseWhen parses an RFC 3339 time, a date, or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, a date or a duration", s)
}
