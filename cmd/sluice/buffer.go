package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
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
engine runs, and on a full disk. While the engine writes the buffer they read
it again until one reading saw the same manifest, cursor and files from start
to end, and the record the engine is writing at the end of its WAL file is no
damage. repair takes the buffer's lock: stop the engine first.`,
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
				s0, err := statusDir(dir)
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
			st, err := statusDir(dir)
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
			in, err := inspectDir(args[0], buffer.InspectOptions{VerifyChecksums: !noVerify})
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

// statusDir is the status of the buffer in dir (inspectDir).
func statusDir(dir string) (*ops.Status, error) {
	in, err := inspectDir(dir, buffer.InspectOptions{})
	if err != nil {
		return nil, err
	}
	return ops.StatusOf(in, time.Now()), nil
}

// Reading a buffer a running engine writes: at most liveReads readings
// within liveReadTime.
const (
	liveReads    = 100
	liveReadTime = 5 * time.Second
)

// inspectDir reads the buffer in dir without its lock, as one moment of
// it: a reading counts when the manifest, the cursor, the sync mark, the
// meta file and the names of the files were the same before and after it
// (bufferStamp); otherwise (a running engine sealed, delivered or deleted
// meanwhile) it reads again. When the process that holds the buffer is
// running, a torn tail of its newest WAL file is the record it is
// writing, not damage. It refuses a directory that is no buffer, naming
// the buffers below it.
func inspectDir(dir string, opts buffer.InspectOptions) (*buffer.Inspection, error) {
	if err := isBufferDir(dir); err != nil {
		return nil, err
	}
	start := time.Now()
	for n := 1; ; n++ {
		before, berr := bufferStamp(dir)
		in, err := buffer.Inspect(dir, opts)
		after, aerr := bufferStamp(dir)
		if berr != nil || aerr != nil || bytes.Equal(before, after) {
			if err != nil {
				return nil, err
			}
			if _, ok := bufferHolder(dir); ok {
				inFlight(in)
			}
			return in, nil
		}
		if n >= liveReads || time.Since(start) > liveReadTime {
			msg := fmt.Sprintf("%s changed during each of %d readings: a running engine writes it faster than it can be read", dir, n)
			if pid, ok := bufferHolder(dir); ok {
				msg += fmt.Sprintf(" (process %d)", pid)
			}
			return nil, errors.New(msg + "; `sluice status` (the engine's own API) shows its sinks' backlogs")
		}
		time.Sleep(time.Duration(min(n, 20)) * time.Millisecond)
	}
}

// inFlight drops the torn tail of the newest WAL file of in, which the
// running engine is writing.
func inFlight(in *buffer.Inspection) {
	newest := -1
	for i, w := range in.WAL {
		if newest < 0 || w.Num > in.WAL[newest].Num {
			newest = i
		}
	}
	if newest >= 0 {
		in.WAL[newest].TornAt, in.WAL[newest].TornBytes = -1, 0
	}
}

// bufferStamp is what changes when a writer changes the buffer in dir
// other than by appending to a WAL file: the manifest, cursor, sync mark
// and meta files, and the names of the files in its directories.
func bufferStamp(dir string) ([]byte, error) {
	h := sha256.New()
	for _, name := range []string{disk.ManifestName, disk.CursorName, disk.SyncMarkName, disk.MetaName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	for _, sub := range []string{disk.WALDir, disk.SegDir, disk.DeadDir, disk.QuarantineDir} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range es {
			fmt.Fprintf(h, "%s/%s\n", sub, e.Name())
		}
	}
	return h.Sum(nil), nil
}

// pidHolder returns the process that last opened the buffer in dir for
// writing (<dir>.lock) when it is running.
func pidHolder(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Clean(dir) + ".lock")
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return 0, false
	}
	err = p.Signal(syscall.Signal(0))
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}

// isBufferDir refuses a directory that holds none of a buffer's files
// (an engine's data directory, say), naming the buffers below it.
func isBufferDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("buffer: %s is not a directory", dir)
	}
	if looksLikeBuffer(dir) {
		return nil
	}
	var found []string
	const most = 20
	// A sink's buffer is <data dir>/<pipeline>/<sink>: look two levels
	// down (three for a directory above the data directory).
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		es, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range es {
			if len(found) >= most {
				return
			}
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			sub := filepath.Join(d, e.Name())
			if looksLikeBuffer(sub) {
				found = append(found, sub)
			} else if depth < 3 {
				walk(sub, depth+1)
			}
		}
	}
	walk(dir, 1)
	msg := fmt.Sprintf("%s is not a sink's buffer directory (no manifest, meta or wal/ in it)", dir)
	if len(found) == 0 {
		return errors.New(msg + "; a sink's buffer is <data dir>/<pipeline>/<sink> (or its buffer.dir)")
	}
	slices.Sort(found)
	return fmt.Errorf("%s; the buffers in it:\n  %s", msg, strings.Join(found, "\n  "))
}

// looksLikeBuffer says whether dir holds a buffer's files.
func looksLikeBuffer(dir string) bool {
	for _, name := range []string{disk.ManifestName, disk.MetaName, disk.CursorName, disk.WALDir, disk.SegDir} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}
