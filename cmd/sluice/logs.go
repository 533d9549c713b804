package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/engine/logquery"
)

// fileSink returns the handler through which the loggers write to the log
// file once openLogFile has opened one.
func (g *globals) fileSink() *logfile.Late {
	if g.file == nil {
		g.file = logfile.NewLate()
	}
	return g.file
}

// fileLevel is the level of the log file: the command line's (or the
// release's) when lower than info, else info, so that the file holds
// what happened even when stderr shows only warnings.
type fileLevel struct{ g *globals }

func (l fileLevel) Level() slog.Level { return min(l.g.level.Level(), slog.LevelInfo) }

// openLogFile makes the loggers also write JSON records to the rotating
// log file under dataDir/logs; the returned function closes it. A log
// file that cannot be opened is a warning: the engine runs without it.
func (g *globals) openLogFile(log *slog.Logger, dataDir string, lc agent.LogsConfig) func() {
	return g.openLogDir(log, logfile.Dir(dataDir), lc)
}

// openLogDir is openLogFile with the log files in dir itself.
func (g *globals) openLogDir(log *slog.Logger, dir string, lc agent.LogsConfig) func() {
	w, err := logfile.Open(logfile.Options{Dir: dir, MaxFileBytes: lc.MaxFileBytes, MaxFiles: lc.MaxFiles})
	if err != nil {
		log.Warn("no log file: logging to stderr only", "err", err)
		return func() {}
	}
	late := g.fileSink()
	late.Attach(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: fileLevel{g}}))
	return func() {
		late.Detach()
		_ = w.Close()
	}
}

// defaultLogs is the log file of a run without an edge configuration.
func defaultLogs() agent.LogsConfig {
	return agent.LogsConfig{MaxFileBytes: logfile.DefaultMaxFileBytes, MaxFiles: logfile.DefaultMaxFiles}
}

// logFilterFlags are the filters of sluice logs and sluice hub logs.
type logFilterFlags struct {
	level     string
	since     string
	until     string
	pipeline  string
	component string
	grep      string
	limit     int
}

func (f *logFilterFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.level, "level", "info", "lowest level shown: debug, info, warn or error")
	cmd.Flags().StringVar(&f.since, "since", "", "records at or after this time: a duration back from now (1h, 2d), a date or an RFC 3339 time")
	cmd.Flags().StringVar(&f.until, "until", "", "records at or before this time: a duration back from now, a date or an RFC 3339 time")
	cmd.Flags().StringVar(&f.pipeline, "pipeline", "", "records of this pipeline only")
	cmd.Flags().StringVar(&f.component, "component", "", "records of this component (source, operator or sink) only")
	cmd.Flags().StringVar(&f.grep, "grep", "", "records whose JSON line matches this regular expression (RE2 syntax)")
	cmd.Flags().IntVar(&f.limit, "limit", logquery.DefaultLimit, fmt.Sprintf("show the newest N matching records (1 to %d)", logquery.MaxLimit))
}

// query returns the query of the flags; now anchors durations.
func (f *logFilterFlags) query(now time.Time) (logquery.Query, error) {
	var q logquery.Query
	if err := q.Level.UnmarshalText([]byte(f.level)); err != nil {
		return q, fmt.Errorf("--level: %q is not one of debug, info, warn, error", f.level)
	}
	var err error
	if f.since != "" {
		if q.Since, err = parseWhen(f.since, now); err != nil {
			return q, fmt.Errorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if q.Until, err = parseWhen(f.until, now); err != nil {
			return q, fmt.Errorf("--until: %w", err)
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return q, errors.New("--until is before --since")
	}
	q.Pipeline, q.Component = f.pipeline, f.component
	if f.grep != "" {
		if len(f.grep) > logquery.MaxGrepBytes {
			return q, fmt.Errorf("--grep: at most %d bytes", logquery.MaxGrepBytes)
		}
		if q.Grep, err = regexp.Compile(f.grep); err != nil {
			return q, fmt.Errorf("--grep: %w", err)
		}
	}
	if f.limit < 1 || f.limit > logquery.MaxLimit {
		return q, fmt.Errorf("--limit: %d is not from 1 to %d", f.limit, logquery.MaxLimit)
	}
	q.Limit = f.limit
	return q, nil
}

func newLogsCmd(g *globals) *cobra.Command {
	var (
		filters logFilterFlags
		edge    edgeFlags
		logDir  string
		follow  bool
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "logs [--level warn] [--since 1h] [--until T] [--pipeline P] [--component C] [--grep RE] [--follow] [--json] [--data-dir DIR | --config sluice.yaml | --log-dir DIR]",
		Short: "Query the engine's log file",
		Long: `Logs shows the records of the engine's log file: every log record of sluice
run (JSON, secrets masked as on stderr, level info and above) also goes to
<data-dir>/logs/sluice.log, rotated by size (the logs section of sluice.yaml;
by default 10 files of 10 MiB); sluice hub --log-dir DIR writes its own to
DIR, which --log-dir DIR reads.

It shows the newest --limit records that pass every filter, oldest first:
--level (and above), --since and --until (a duration back from now such as
1h or 2d, a date, or an RFC 3339 time), --pipeline and --component (the record's
attributes), --grep (a regular expression matched against the record's JSON
line). Files outside the time window are not read, so a query over a narrow
window stays fast however large the log. With --follow it then shows new
records as they are written, until SIGINT. --json prints the records as they
are stored, one JSON object a line.

Lines that are not log records (a record cut short when the engine was
killed, a damaged file) are skipped and counted on stderr.

Exit codes: 0 done (also when nothing matched), 1 failed, 64 a bad command
line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := filters.query(time.Now())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			given := 0
			for _, v := range []string{edge.config, edge.dataDir, logDir} {
				if v != "" {
					given++
				}
			}
			if given > 1 {
				return &exitError{code: exitUsage, err: errors.New("give one of --config, --data-dir and --log-dir")}
			}
			dataDir := edge.dataDir
			if edge.config != "" {
				cfg, errs := agent.LoadConfig(edge.config)
				if len(errs) > 0 {
					return &exitError{code: exitFailed, err: errs}
				}
				dataDir = cfg.DataDir
			}
			if dataDir == "" {
				dataDir = agent.DefaultDataDir
			}
			dir := logfile.Dir(dataDir)
			if logDir != "" {
				dir = logDir
			}
			if _, err := os.Stat(dir); err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("no log in %s: %w", dir, err)}
			}
			out := g.stdout
			emit := func(e logquery.Entry) error { return writeRecord(out, e.Line, asJSON) }
			var st logquery.Stats
			if follow {
				ctx, stop := stopOnSignal(cmd.Context(), slog.New(slog.DiscardHandler))
				defer stop()
				st, err = logquery.Follow(ctx, dir, q, 0, emit)
			} else {
				var res *logquery.Result
				res, err = logquery.Search(cmd.Context(), dir, q)
				if err == nil {
					st = res.Stats
					for _, e := range res.Entries {
						if err = emit(e); err != nil {
							break
						}
					}
					if res.Truncated {
						fmt.Fprintf(g.stderr, "older matching records are not shown (--limit %d)\n", q.Limit)
					}
				}
			}
			reportSkipped(g.stderr, st)
			if err != nil && !errors.Is(err, context.Canceled) {
				return &exitError{code: exitFailed, err: err}
			}
			return nil
		},
	}
	filters.register(cmd)
	cmd.Flags().StringVar(&edge.config, "config", "", "the edge configuration file (sluice.yaml): the log of its data_dir")
	cmd.Flags().StringVar(&edge.dataDir, "data-dir", "", "the data directory of sluice run (--data-dir) whose log to read (default sluice-data)")
	cmd.Flags().StringVar(&logDir, "log-dir", "", "read the log files of this directory (as sluice hub --log-dir writes them)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "after the matching records, show new ones as they are written, until SIGINT")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the records as stored: one JSON object a line")
	return cmd
}

// writeRecord prints a record as stored (asJSON) or as text.
func writeRecord(w io.Writer, line []byte, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintf(w, "%s\n", line)
		return err
	}
	return logquery.Format(w, line)
}

// reportSkipped says how many lines were not log records.
func reportSkipped(w io.Writer, st logquery.Stats) {
	var parts []string
	if st.BadLines > 0 {
		parts = append(parts, fmt.Sprintf("%d lines that are not log records", st.BadLines))
	}
	if st.LongLines > 0 {
		parts = append(parts, fmt.Sprintf("%d lines longer than %d bytes", st.LongLines, logfile.MaxLineBytes))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "skipped %s\n", strings.Join(parts, " and "))
	}
}
