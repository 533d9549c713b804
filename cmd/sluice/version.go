package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/pipelines"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(g.stdout, versionLine())
			return nil
		},
	}
}

// versionLine is what sluice version and sluice --version print.
func versionLine() string {
	commit := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	build := ""
	if pipelines.Lean() {
		// make lean: say so, since it lacks components (see pipelines.LeftOut).
		build = ", lean edge build"
	}
	return fmt.Sprintf("sluice %s (commit %s, %s %s/%s%s)", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, build)
}
