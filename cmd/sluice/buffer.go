package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
)

func newBufferCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "buffer",
		Short: "Check, inspect and repair a sink's durable buffer directory",
		Long: `Buffer works on the durable buffer directory of one cloud-bound sink.

  status   backlog rows and bytes, oldest event time, cursor, drain rate and ETA
  inspect  every segment, WAL file, dead letter and quarantined file
  repair   recover the buffer as the engine does on start, and report it

status and inspect only read and take no lock: they are safe while the
engine runs, and on a full disk. repair takes the buffer's lock: stop the
engine first.`,
	}
	cmd.AddCommand(newBufferStatusCmd(g), newBufferInspectCmd(g), newBufferRepairCmd(g))
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// sampleFile is where status keeps its last sample of dir.
func sampleFile(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(base, "sluice", "buffer-status", hex.EncodeToString(sum[:8])+".json")
}

func newBufferStatusCmd(g *globals) *cobra.Command {
	var (
		asJSON   bool
		interval time.Duration
		sample   string
	)
	cmd := &cobra.Command{
		Use:   "status DIR",
		Short: "Backlog, oldest event time, cursor, drain rate and ETA of a buffer",
		Long: `Status summarises a buffer directory without changing it: the undelivered
rows (backlog) with their bytes and files, the oldest undelivered sequence and
event time and its age, the cursor, the files on disk, dead letters and
quarantined files, and any damage found.

The drain rate (cursor advance per second), the inflow and the ETA come from
two samples: with --interval, status samples twice that far apart; otherwise
it compares with the sample the previous status run left (kept in the user's
cache directory, or in --sample-file).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if sample == "" {
				sample = sampleFile(dir)
			}
			var prev ops.Sample
			var havePrev bool
			if interval > 0 {
				s0, err := ops.StatusDir(dir)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				prev, havePrev = s0.Sample(), true
				select {
				case <-time.After(interval):
				case <-cmd.Context().Done():
					return &exitError{code: 1, err: cmd.Context().Err()}
				}
			} else if sample != "-" {
				prev, havePrev = ops.ReadSample(sample)
			}
			st, err := ops.StatusDir(dir)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if havePrev {
				st.WithRate(prev)
			}
			if sample != "-" {
				_ = ops.WriteSample(sample, st.Sample())
			}
			if asJSON {
				return writeJSON(g.stdout, st)
			}
			return st.WriteText(g.stdout)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.DurationVar(&interval, "interval", 0, "sample twice this far apart to measure the drain rate")
	f.StringVar(&sample, "sample-file", "", "file keeping the previous sample (default: in the user cache directory; - for none)")
	return cmd
}

func newBufferInspectCmd(g *globals) *cobra.Command {
	var asJSON, noVerify bool
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "List a buffer's segments, WAL files, dead letters and quarantine",
		Long: `Inspect lists, without changing anything: the cursor and the manifest; every
data segment with its sequence range, event-time range, rows, undelivered
rows, bytes, checksum and state; every WAL file with its records, torn tail or
damage (file and offset); dead-letter segments; the ranges the manifest
records as dropped or lost; and the files in quarantine. It reads every
segment to verify its checksum unless --no-verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := buffer.Inspect(args[0], buffer.InspectOptions{VerifyChecksums: !noVerify})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				out := struct {
					*buffer.Inspection
					Schema   string   `json:"schema,omitempty"`
					Problems []string `json:"problems"`
				}{Inspection: in, Problems: ops.Problems(in)}
				if in.Schema != nil {
					out.Schema = in.Schema.String()
				}
				return writeJSON(g.stdout, out)
			}
			return ops.WriteInspection(g.stdout, in)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "do not read segments to verify their checksums")
	return cmd
}

func newBufferRepairCmd(g *globals) *cobra.Command {
	var (
		opts     ops.RepairOptions
		asJSON   bool
		progress string
	)
	cmd := &cobra.Command{
		Use:   "repair DIR",
		Short: "Recover a buffer: truncate torn tails, quarantine damage, report",
		Long: `Repair opens the buffer as the engine does on start: torn WAL tails are
truncated, damaged WAL files have their valid records sealed into segments and
are moved to quarantine/, damaged or unlisted segments are quarantined,
adopted or removed, and the manifest is rewritten. It then reads every row
once (unless --no-verify), which checks segment checksums. Nothing is
delivered or deleted from the backlog except what is damaged. Every action is
reported with the file, the offset and the sequences lost; a WAL file cut
below what it had synced is damage (rows were lost), not a torn tail.

Repair takes the buffer's lock (stop the engine first) and works on a full
disk (salvaging a damaged WAL file into a segment then waits for space).
--dry-run only reports what would be done.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if err := checkProgress(progress); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			opts.Log = log
			bar := newProgressBar(g, progress, "repair")
			opts.Progress = bar.update
			rep, err := ops.Repair(args[0], opts)
			bar.done()
			if rep != nil {
				if asJSON {
					if werr := writeJSON(g.stdout, rep); werr != nil {
						return werr
					}
				} else if werr := rep.WriteText(g.stdout); werr != nil {
					return werr
				}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.DryRun, "dry-run", false, "only report what repair would do")
	f.BoolVar(&opts.NoVerify, "no-verify", false, "do not read every row after opening")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&progress, "progress", "auto", "progress bar on stderr while the rows are read: auto (when a terminal), always or never")
	f.StringVar(&opts.Time, "time", "", "event-time column (when the schema comes from the WAL only)")
	f.StringVar(&opts.Key, "key", "", "key column (when the schema comes from the WAL only)")
	return cmd
}
