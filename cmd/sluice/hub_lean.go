//go:build sluice_lean

package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
)

// hubPostgresEnv names the variable of the hub's database DSN (the
// complete build's hub.go); the lean build reads it only to refuse.
const hubPostgresEnv = "SLUICE_HUB_POSTGRES"

// notInLean is the refusal of what a lean edge build leaves out.
func notInLean(what string) error {
	return &exitError{code: exitUsage, err: fmt.Errorf("%s is not included in this build of sluice (a lean edge build, -tags sluice_lean): an edge does not run the hub; use the complete build (make build)", what)}
}

// newHubCmd is `sluice hub` in a lean edge build: every use of it (the
// hub server and the commands that talk to one) is refused.
func newHubCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:                "hub",
		Short:              "The hub (not included in this lean edge build)",
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(*cobra.Command, []string) error {
			return notInLean("sluice hub")
		},
	}
}

// runHubDemo refuses: the hub demo runs a hub.
func runHubDemo(context.Context, *globals, *slog.Logger, hubDemoOptions) error {
	return notInLean("sluice demo --hub")
}

// redactDemoPassword does nothing: the hub demo does not run here.
func redactDemoPassword(string) {}
