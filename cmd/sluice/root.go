package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/engine/redact"
)

// Exit codes. Go itself exits 2 on a fatal runtime error (and a panic), so
// no code of ours is 2: a 2 always means the program crashed.
const (
	// exitFailed: a pipeline or operation failed, or the configuration
	// is invalid.
	exitFailed = 1
	// exitUsage: a bad command line (unknown flag or command, missing
	// argument, bad flag value), as sysexits' EX_USAGE.
	exitUsage = 64
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// globals are the persistent flags shared by every subcommand.
type globals struct {
	logFormat string
	logLevel  string
	stdout    io.Writer
	stderr    io.Writer
	// level is the level of the logger made last (a release's settings
	// may change it at run time).
	level slog.LevelVar
	// file is where the loggers also write once a log file is open
	// (openLogFile).
	file *logfile.Late
	// live is stderr shared by the logger and a live status line (errOut).
	live     *liveLine
	liveOnce sync.Once
}

func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", g.logLevel)
	}
	g.level.Set(level)
	opts := &slog.HandlerOptions{Level: &g.level}
	// Every record is masked (see redact): no log line carries a URL's
	// password, a token or a registered secret value. The records also
	// go to the log file once one is open.
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(redact.NewHandler(logfile.Tee{slog.NewTextHandler(g.errOut(), opts), g.fileSink()})), nil
	case "json":
		return slog.New(redact.NewHandler(logfile.Tee{slog.NewJSONHandler(g.errOut(), opts), g.fileSink()})), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not one of text, json", g.logFormat)
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Edge stream processing: device data to windows, alerts and the cloud",
		Long: `Sluice is an edge stream-processing engine for industrial sites. It reads
device data (simulator, files), computes event-time window statistics, raises
alerts from expression rules and writes the results to sinks, all declared in
pipeline YAML files.

Start with:
  sluice demo                      run the embedded wind-farm example
  sluice demo --hub                the edge-cloud loop: embedded NATS, a hub on PostgreSQL, two edges
  sluice validate pipeline.yaml    check a pipeline file
  sluice run pipeline.yaml         run it until its sources end or Ctrl-C
  sluice run --config sluice.yaml  run as an edge agent that applies signed releases (sluice import)
  sluice bench                     measure throughput on this machine`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what sluice version prints.
		Version: versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.AddCommand(newRunCmd(g), newDemoCmd(g), newSimCmd(g), newValidateCmd(g), newSchemaCmd(g), newDocsCmd(g), newBenchCmd(g), newVersionCmd(g), newBufferCmd(g), newExportCmd(g), newReplayCmd(g))
	root.AddCommand(newBundleCmd(g), newImportCmd(g), newStatusCmd(g), newHubCmd(g), newLogsCmd(g))
	return root
}

func execute(args []string, stdout, stderr io.Writer) int {
	return executeContext(context.Background(), args, stdout, stderr)
}

// executeContext runs the command line args; cancelling ctx stops a
// command that runs until a signal, as the signal would.
func executeContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The values of secret-named environment variables and the passwords
	// of URLs in the environment are masked from the start, whether or
	// not a pipeline refers to them: a file source reading
	// /proc/self/environ or a library printing a variable must not show
	// them.
	redact.RegisterEnv(os.Environ())
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	// Errors are masked like log records: a configuration error may quote
	// a URL or a value that holds a secret.
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, redact.String(ee.err.Error()))
		}
		return ee.code
	}
	// Errors cobra returns itself are about the command line.
	fmt.Fprintln(stderr, "sluice:", redact.String(err.Error()))
	return exitUsage
}
