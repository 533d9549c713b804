package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/pipelines"
)

// version and commit are set at build time by make:
// -ldflags "-X main.version=... -X main.commit=...". Without them the
// version line takes what the build recorded (versionOf).
var (
	version = "dev"
	commit  = ""
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Long: `Version prints the version, the commit it was built from, the Go version and
the platform. A build by make names both (from git); go build in a git
checkout names the commit (and "modified" when the tree had changes); go
install of a module version names that version. A build that recorded
neither (go build -buildvcs=false outside make) says "dev" and names no
commit.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(g.stdout, versionLine())
			return nil
		},
	}
}

// versionLine is what sluice version and sluice --version print.
func versionLine() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(version, commit, bi)
}

// versionOf is the version line of a build with the -ldflags values
// version and commit and the build information bi (nil when none): the
// version from -ldflags, else the module's version (go install
// module@version), else "dev"; the commit from -ldflags, else the
// build's version control stamp (its first 12 digits, and "modified" when
// the tree had changes), else none.
func versionOf(version, commit string, bi *debug.BuildInfo) string {
	var rev string
	var modified bool
	if bi != nil {
		if version == "" || version == "dev" {
			if v := bi.Main.Version; v != "" && v != "(devel)" {
				version = v
			}
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if version == "" {
		version = "dev"
	}
	var parts []string
	switch {
	case commit != "":
		parts = append(parts, "commit "+commit)
	case rev != "":
		parts = append(parts, "commit "+rev[:min(len(rev), 12)])
		if modified {
			parts = append(parts, "modified")
		}
	}
	parts = append(parts, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
	if pipelines.Lean() {
		// make lean: say so, since it lacks components (see pipelines.LeftOut).
		parts = append(parts, "lean edge build")
	}
	return fmt.Sprintf("sluice %s (%s)", version, strings.Join(parts, ", "))
}
