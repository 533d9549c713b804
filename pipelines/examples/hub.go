package examples

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Hub holds the release of the hub demo (`sluice demo --hub`): version 1
// under HubRelease (one pipeline of simulated turbines whose data and
// alerts go to the hub through nats sinks, and the rule set "turbine" with
// one rule), and under HubV2 the files version 2 replaces (the rule set
// with a second rule).
//
//go:embed hub
var Hub embed.FS

// Directories of Hub.
const (
	HubRelease = "hub/release"
	HubV2      = "hub/v2"
)

// WriteHub writes the files of version 1 or 2 of the hub demo's release
// into dir: those under HubRelease, and for version 2 those under HubV2
// over them.
func WriteHub(dir string, version int) error {
	roots := map[int][]string{1: {HubRelease}, 2: {HubRelease, HubV2}}[version]
	if roots == nil {
		return fmt.Errorf("hub demo release: no version %d", version)
	}
	for _, root := range roots {
		if err := copyTree(Hub, root, dir); err != nil {
			return fmt.Errorf("hub demo release v%d: %w", version, err)
		}
	}
	return nil
}

// copyTree copies the tree under root of fsys into dir.
func copyTree(fsys fs.FS, root, dir string) error {
	return fs.WalkDir(fsys, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, root), "/")))
		if e.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}
