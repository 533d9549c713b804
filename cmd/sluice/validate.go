package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/pipelines"
)

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check pipeline files and report every error as file:line:col: message",
		Long: `Validate loads the pipeline files, interpolates ${VAR} and ${VAR:-default},
and builds every component without running anything. It reports every problem
it finds — invalid YAML, unknown or misspelt fields, wrong types, bad
expressions, unknown streams, cycles, fields missing from a stream's schema —
one per line as file:line:col: message on stderr, and exits 1. It exits 0 and
prints a one-line summary when the files are valid.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
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
