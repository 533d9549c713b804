package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/agent/localapi"
	"github.com/sluice-edge/sluice/engine/bundle"
)

// edgeFlags choose the edge import and status talk to.
type edgeFlags struct {
	config  string
	dataDir string
}

func (f *edgeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "the edge configuration file (sluice.yaml) the engine runs with")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "the data directory of an engine that has run with --config (default sluice-data)")
}

// settings returns the edge's configuration: the file, or the record a
// running engine left in its data directory.
func (f *edgeFlags) settings() (*agent.Config, error) {
	if f.config != "" && f.dataDir != "" {
		return nil, &exitError{code: exitUsage, err: errors.New("give --config or --data-dir, not both")}
	}
	if f.config != "" {
		cfg, errs := agent.LoadConfig(f.config)
		if len(errs) > 0 {
			return nil, &exitError{code: exitFailed, err: errs}
		}
		cfg.Listen = agent.BoundListen(cfg)
		return cfg, nil
	}
	dir := f.dataDir
	if dir == "" {
		dir = agent.DefaultDataDir
	}
	cfg, err := agent.ConfigFromDataDir(dir)
	if err != nil {
		return nil, &exitError{code: exitFailed, err: err}
	}
	return cfg, nil
}

// engineClient returns a client of the engine running with cfg, or nil
// when none answers. An engine that answers but refuses (a wrong token) is
// an error.
func engineClient(ctx context.Context, cfg *agent.Config) (*localapi.Client, error) {
	tok, err := agent.ReadToken(cfg.TokenFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no engine has ever run with this token file
	}
	if err != nil {
		return nil, err
	}
	c := localapi.NewClient(cfg.Listen, tok)
	if err := c.Ping(ctx); err != nil {
		c.Close()
		if errors.Is(err, localapi.ErrUnreachable) {
			return nil, nil
		}
		return nil, err
	}
	return c, nil
}

func newImportCmd(g *globals) *cobra.Command {
	var (
		flags    edgeFlags
		progress string
	)
	cmd := &cobra.Command{
		Use:   "import FILE [--config sluice.yaml | --data-dir DIR]",
		Short: "Apply a signed release bundle to an edge, or stage it for the engine's next start",
		Long: `Import hands a release bundle to the edge agent (sluice run --config).

When the engine runs, the bundle goes to its local API, which verifies it
(signature, every digest, targets, a version above the applied one), dry-runs
it, switches to it and answers "applied NAME vN" or "rejected NAME vN:
reason". When no engine runs, import makes the same checks now and stages the
bundle in the data directory; the engine applies it at its next start.

On a terminal (--progress auto) a progress bar shows the bundle being sent
to the engine (bytes, rate, ETA), then how long the engine has been applying
it, or how long the offline checks have taken.

Exit codes: 0 applied or staged, 1 rejected or failed, 64 a bad command line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkProgress(progress); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			cfg, err := flags.settings()
			if err != nil {
				return err
			}
			bar := newProgressBar(g, progress, "import")
			defer bar.done()
			f, size, err := openBundleSized(args[0])
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("import: %w", err)}
			}
			defer f.Close()
			ctx := cmd.Context()
			c, err := engineClient(ctx, cfg)
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("import: %w", err)}
			}
			if c != nil {
				defer c.Close()
				body := bar.reader(f, size)
				// The answer comes once the engine has verified, dry-run
				// and switched to the bundle.
				body = &onEOF{r: body, fn: func() { bar.phase("applying (verify, dry-run, switch)") }}
				rep, err := c.Import(ctx, body, size, filepath.Base(args[0]))
				bar.done()
				if err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("import: %w", err)}
				}
				return printOutcome(g.stdout, rep, cfg.Edge)
			}
			f.Close()
			// The agent opens what it stages without following a link;
			// the operator's link to a bundle is the bundle, as above.
			file, err := filepath.EvalSymlinks(args[0])
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("import: %w", err)}
			}
			bar.phase("checking and staging (no engine runs)")
			err = stageOffline(ctx, g, cfg, file, bar.done)
			return err
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&progress, "progress", "auto", "progress on stderr: auto (when a terminal), always or never")
	return cmd
}

// onEOF calls fn once, when r has been read to its end.
type onEOF struct {
	r    io.Reader
	fn   func()
	done bool
}

func (o *onEOF) Read(b []byte) (int, error) {
	n, err := o.r.Read(b)
	if err == io.EOF && !o.done {
		o.done = true
		o.fn()
	}
	return n, err
}

// printOutcome prints an engine's report; a rejection is exit 1.
func printOutcome(w io.Writer, rep agent.Report, edge string) error {
	if rep.Outcome != agent.Applied {
		msg := rep.String()
		if rep.Location != "" && !strings.Contains(rep.Reason, rep.Location) {
			msg += " (at " + rep.Location + ")"
		}
		return &exitError{code: exitFailed, err: errors.New(msg)}
	}
	fmt.Fprintf(w, "%s on edge %s\n", rep.String(), edge)
	if rep.Steps != "" {
		fmt.Fprintf(w, "  %s\n", rep.Steps)
	}
	return nil
}

// stageOffline checks a bundle against a stopped engine's state and
// stages it for its next start; checked is called once the checks are
// over, before anything is printed.
func stageOffline(ctx context.Context, g *globals, cfg *agent.Config, file string, checked func()) error {
	trust, err := bundle.LoadTrust(cfg.Trust)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("import: trust: %w", err)}
	}
	opts := agent.Options{Dir: cfg.AgentDir(), Edge: cfg.Edge, Labels: cfg.Labels, Trust: trust,
		MaxBundleBytes: cfg.MaxBundleBytes, KeepReleases: cfg.KeepReleases}
	// An engine that is starting holds the state directory before its API
	// answers; another import holds it for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := agent.Open(opts, nil)
		if err == nil {
			defer a.Close()
			rep, err := a.Stage(file)
			checked()
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("import: %w", err)}
			}
			if rep.Outcome != agent.Pending {
				return printOutcome(g.stdout, rep, cfg.Edge)
			}
			fmt.Fprintf(g.stdout, "staged %s v%d for edge %s: no engine runs on %s; it will be applied at the next start (pending/%s)\n",
				rep.Bundle, rep.Version, cfg.Edge, cfg.DataDir, rep.File)
			return nil
		}
		if !errors.Is(err, agent.ErrLocked) {
			return &exitError{code: exitFailed, err: fmt.Errorf("import: %w", err)}
		}
		if c, _ := engineClient(ctx, cfg); c != nil {
			c.Close()
			return &exitError{code: exitFailed, err: errors.New("import: the engine started meanwhile; import again")}
		}
		if time.Now().After(deadline) {
			return &exitError{code: exitFailed, err: fmt.Errorf("import: an engine holds %s but its API does not answer at %s", cfg.DataDir, cfg.Listen)}
		}
		select {
		case <-ctx.Done():
			return &exitError{code: exitFailed, err: ctx.Err()}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	var (
		flags  edgeFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status [--config sluice.yaml | --data-dir DIR] [--json]",
		Short: "Show what an edge runs: its release, its pipelines and the last apply",
		Long: `Status asks the running engine (its local API) for the release it runs, the
state of each pipeline and the outcome of the last apply; when no engine runs
it reads the same from the data directory (without pipeline states).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := flags.settings()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var st agent.Status
			c, err := engineClient(ctx, cfg)
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("status: %w", err)}
			}
			if c != nil {
				defer c.Close()
				if st, err = c.Status(ctx); err != nil {
					return &exitError{code: exitFailed, err: err}
				}
			} else if st, err = agent.ReadStatus(cfg.AgentDir(), cfg.Edge); err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(g.stdout, st, cfg)
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func printStatus(w io.Writer, st agent.Status, cfg *agent.Config) {
	if st.Engine {
		fmt.Fprintf(w, "edge %s: engine running (api %s)\n", st.Edge, cfg.Listen)
	} else {
		fmt.Fprintf(w, "edge %s: no engine running (read from %s)\n", st.Edge, cfg.AgentDir())
	}
	if c := st.Current; c != nil {
		fmt.Fprintf(w, "release: %s v%d, applied %s\n", c.Name, c.Version, c.Applied.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "release: none applied (the configured pipelines run)")
	}
	if len(st.Pipelines) > 0 {
		fmt.Fprintln(w, "pipelines:")
		for _, p := range st.Pipelines {
			line := fmt.Sprintf("  %s  %s since %s", p.Name, p.State, p.Since.UTC().Format(time.RFC3339))
			if p.Err != "" {
				line += ": " + p.Err
			}
			fmt.Fprintln(w, line)
		}
	}
	if r := st.Last; r != nil {
		line := fmt.Sprintf("last apply: %s at %s", r.String(), r.Time.UTC().Format(time.RFC3339))
		if r.Location != "" && !strings.Contains(r.Reason, r.Location) {
			line += " (at " + r.Location + ")"
		}
		fmt.Fprintln(w, line)
	}
	if len(st.Pending) > 0 {
		fmt.Fprintf(w, "pending: %d bundle(s) staged for the next start: %s\n", len(st.Pending), strings.Join(st.Pending, ", "))
	}
}
