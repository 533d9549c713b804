package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/pipelines"
)

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR... | validate RELEASE_DIR",
		Short: "Check pipeline files and report every error as file:line:col: message",
		Long: `Validate loads the pipeline files, interpolates ${VAR} and ${VAR:-default},
and builds every component without running anything. It reports every problem
it finds — invalid YAML, unknown or misspelt fields, wrong types, bad
expressions, unknown streams, cycles, fields missing from a stream's schema —
one per line as file:line:col: message on stderr, and exits 1. It exits 0 and
prints a one-line summary when the files are valid.

A release directory (one holding pipelines/, as sluice bundle build takes it)
is checked as an edge would check the release: its models, rule sets,
settings and pipelines together, errors named relative to it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if len(args) == 1 && isReleaseDir(args[0]) {
				rel, errs := pipelines.LoadRelease(args[0], os.LookupEnv)
				if len(errs) > 0 {
					return &exitError{code: exitFailed, err: errs}
				}
				fmt.Fprintf(g.stdout, "ok: release with %d pipeline(s) valid\n", len(rel.Defs))
				return nil
			}
			defs, errs := pipelines.Validate(args, os.LookupEnv, pipelines.Options{Log: log})
			if len(errs) > 0 {
				return &exitError{code: exitFailed, err: errs}
			}
			fmt.Fprintf(g.stdout, "ok: %d pipeline(s) valid\n", len(defs))
			return nil
		},
	}
}

// isReleaseDir reports whether dir is a release directory: it has a
// pipelines/ subdirectory.
func isReleaseDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "pipelines"))
	return err == nil && st.IsDir()
}
