package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

func newBundleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Build, sign, verify and inspect release bundles",
		Long: `A release bundle is one signed file carrying an edge's models, pipelines,
rules, ML files and configuration (docs/format/bundle.md): a tar+zstd stream
whose first entries are a manifest and its Ed25519 signature.

  sluice bundle keygen --out release          release.key (0600) and release.pub
  sluice bundle build DIR --name N --version V --key release.key --out N-vV.bundle
  sluice bundle verify N-vV.bundle --trust release.pub
  sluice bundle inspect N-vV.bundle [--against DATA_DIR]

An edge applies a bundle with sluice import (see sluice run --config).`,
	}
	cmd.AddCommand(newBundleKeygenCmd(g), newBundleBuildCmd(g), newBundleVerifyCmd(g), newBundleInspectCmd(g))
	return cmd
}

func newBundleKeygenCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Make an Ed25519 signing key: PREFIX.key (mode 0600) and PREFIX.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &exitError{code: exitUsage, err: errors.New("bundle keygen: --out is required")}
			}
			pub, priv, err := bundle.GenerateKey()
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			if err := bundle.WritePrivateKey(out+".key", priv); err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			if err := bundle.WritePublicKey(out+".pub", pub); err != nil {
				os.Remove(out + ".key")
				return &exitError{code: exitFailed, err: err}
			}
			fmt.Fprintf(g.stdout, "key id %s: private key %s.key, public key %s.pub\n", bundle.KeyID(pub), out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "path prefix of the key files (never overwritten)")
	return cmd
}

func newBundleBuildCmd(g *globals) *cobra.Command {
	var (
		opts    bundle.BuildOptions
		keyFile string
		out     string
	)
	cmd := &cobra.Command{
		Use:   "build DIR --name N --version V [--parent P] --key KEY --out FILE",
		Short: "Build and sign a bundle of the files under DIR",
		Long: `Build ships every file under DIR: files must lie under models/, pipelines/
(*.yaml, *.yml), rules/ (*.yaml, *.yml), ml/ or config/, be regular files (no
symbolic links), and pipeline and rule files must parse as YAML. FILE is
written atomically and never overwritten.

Every model an infer step references is loaded before anything is written:
checked against its runtime (an unsupported operator is named), run once on
a batch of zeros and, where the pipeline can be built here, its inputs and
outputs checked against the step's stream. A model that fails refuses the
build with the reason at the step's file:line:col. The rest of the release
is checked by the edge when it applies the bundle (and by sluice validate
on the release directory).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case opts.Name == "":
				return &exitError{code: exitUsage, err: errors.New("bundle build: --name is required")}
			case opts.Version == 0:
				return &exitError{code: exitUsage, err: errors.New("bundle build: --version is required (a positive integer)")}
			case keyFile == "":
				return &exitError{code: exitUsage, err: errors.New("bundle build: --key is required")}
			case out == "":
				return &exitError{code: exitUsage, err: errors.New("bundle build: --out is required")}
			}
			if err := bundle.CheckName(opts.Name); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("--name: %w", err)}
			}
			if opts.Parent >= opts.Version {
				return &exitError{code: exitUsage, err: fmt.Errorf("--parent %d must be below --version %d", opts.Parent, opts.Version)}
			}
			if errs := pipelines.CheckReleaseModels(args[0], os.LookupEnv); len(errs) > 0 {
				return &exitError{code: exitFailed, err: fmt.Errorf("bundle build: a model of the release is refused:\n%w", errs)}
			}
			key, err := bundle.ReadPrivateKey(keyFile)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			opts.Key = key
			m, err := buildTo(out, args[0], opts)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			fmt.Fprintf(g.stdout, "built %s -> %s (key id %s)\n", bundle.ManifestSummary(m), out, bundle.KeyID(key.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "release name (a-z 0-9 . _ -)")
	f.Uint64Var(&opts.Version, "version", 0, "release version, a positive integer above the previous one")
	f.Uint64Var(&opts.Parent, "parent", 0, "the version this one replaces (0: none)")
	f.StringVar(&keyFile, "key", "", "private key file (from bundle keygen)")
	f.StringVar(&out, "out", "", "bundle file to write")
	return cmd
}

// buildTo writes a bundle to out through a temporary file, renamed into
// place once complete and synced.
func buildTo(out, dir string, opts bundle.BuildOptions) (*bundle.Manifest, error) {
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("bundle build: %s exists", out)
	}
	tmp := out + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|spec.NoFollow, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bundle build: %w", err)
	}
	m, err := bundle.Build(f, dir, opts)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := disk.OS.SyncDir(filepath.Dir(out)); err != nil {
		return nil, fmt.Errorf("bundle build: %w", err)
	}
	return m, nil
}

// openBundle opens a bundle file for reading; it must be a regular file.
func openBundle(name string) (*os.File, error) {
	f, _, err := spec.OpenRegular(name, 0)
	return f, err
}

// openBundleSized opens a bundle file like openBundle and returns its size
// too, as the upload to an engine or a hub needs it.
func openBundleSized(name string) (*os.File, int64, error) {
	f, fi, err := spec.OpenRegular(name, 0)
	if err != nil {
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func newBundleVerifyCmd(g *globals) *cobra.Command {
	var trustPath string
	cmd := &cobra.Command{
		Use:   "verify FILE --trust DIR|FILE",
		Short: "Check a bundle's signature against trusted keys and every file against its manifest",
		Long: `Verify reads the whole bundle without writing anything. It exits 0 and
prints the release when the signature verifies with a trusted key and every
file matches the manifest, and exits 1 with the reason otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if trustPath == "" {
				return &exitError{code: exitUsage, err: errors.New("bundle verify: --trust is required")}
			}
			trust, err := bundle.LoadTrust(trustPath)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			f, err := openBundle(args[0])
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("bundle verify: %w", err)}
			}
			defer f.Close()
			b, err := bundle.Verify(f, trust)
			if err != nil {
				return &exitError{code: exitFailed, err: rejected(args[0], b, err)}
			}
			m := b.Manifest
			fmt.Fprintf(g.stdout, "ok: %s, signed by key %s\n", bundle.ManifestSummary(m), b.KeyID())
			for _, f := range m.Files {
				fmt.Fprintf(g.stdout, "  %s  %d  %s\n", f.SHA256, f.Size, f.Path)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&trustPath, "trust", "", "trusted public key file, or a directory of them (*.pub, *.pem)")
	return cmd
}

// rejected says why a bundle was refused, naming its version when the
// manifest was read.
func rejected(name string, b *bundle.Bundle, err error) error {
	if b != nil && b.Manifest != nil {
		return fmt.Errorf("rejected %s v%d (%s): %w", b.Manifest.Name, b.Manifest.Version, name, err)
	}
	return fmt.Errorf("rejected %s: %w", name, err)
}

func newBundleInspectCmd(g *globals) *cobra.Command {
	var trustPath, against string
	cmd := &cobra.Command{
		Use:   "inspect FILE [--trust DIR|FILE] [--against DATA_DIR]",
		Short: "Show a bundle's manifest, signature status and whether its files match",
		Long: `Inspect prints the manifest, the signature's status (valid, untrusted key,
bad or unsigned; without --trust a signed bundle's key is untrusted) and
whether the files match the manifest. It exits 1 when the manifest cannot be
read or a file does not match; a signature that is not valid is reported,
not an error: use verify to decide whether to trust a bundle.

With --against DATA_DIR it also lists the files the bundle adds, removes and
changes (by SHA-256) compared with the release the edge with that data
directory runs, and the version step.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var trust *bundle.Trust
			if trustPath != "" {
				var err error
				if trust, err = bundle.LoadTrust(trustPath); err != nil {
					return &exitError{code: exitFailed, err: err}
				}
			}
			f, err := openBundle(args[0])
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("bundle inspect: %w", err)}
			}
			defer f.Close()
			b, err := bundle.Inspect(f, trust)
			if b != nil && b.Manifest != nil {
				js, _ := json.MarshalIndent(b.Manifest, "", "  ")
				fmt.Fprintf(g.stdout, "%s\n", js)
			}
			if b != nil {
				status := b.Status.String()
				if b.KeyID() != "" {
					status += " (key " + b.KeyID() + ")"
				}
				if b.Status != bundle.SigValid && b.SigErr != nil {
					status += ": " + bundle.ErrorReason(b.SigErr)
				}
				fmt.Fprintf(g.stdout, "signature: %s\n", status)
			}
			if err != nil {
				fmt.Fprintf(g.stdout, "contents: invalid\n")
				return &exitError{code: exitFailed, err: rejected(args[0], b, err)}
			}
			fmt.Fprintf(g.stdout, "contents: %d files match the manifest\n", len(b.Manifest.Files))
			if against != "" {
				if err := printAgainst(g.stdout, b.Manifest, against); err != nil {
					return &exitError{code: exitFailed, err: err}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&trustPath, "trust", "", "trusted public key file, or a directory of them (*.pub, *.pem)")
	cmd.Flags().StringVar(&against, "against", "", "data directory of an edge: show how the bundle differs from the release it runs")
	return cmd
}

// printAgainst prints how a bundle's files differ from those of the
// release applied in the data directory dataDir.
func printAgainst(w io.Writer, m *bundle.Manifest, dataDir string) error {
	cur, old, err := agent.CurrentRelease(filepath.Join(dataDir, "agent"))
	if err != nil {
		return fmt.Errorf("--against: %w", err)
	}
	if cur == nil {
		fmt.Fprintf(w, "against %s: no release applied; every file is new\n", dataDir)
		old = &bundle.Manifest{}
	} else {
		delta := "a different release line"
		if cur.Name == m.Name {
			switch {
			case m.Version > cur.Version:
				delta = fmt.Sprintf("+%d, would apply", m.Version-cur.Version)
			default:
				delta = "not newer: would be rejected"
			}
		}
		fmt.Fprintf(w, "against %s: runs %s v%d; this is %s v%d (%s)\n", dataDir, cur.Name, cur.Version, m.Name, m.Version, delta)
	}
	d := agent.DiffManifests(old, m)
	for _, p := range d.Added {
		fmt.Fprintf(w, "  added    %s\n", p)
	}
	for _, p := range d.Removed {
		fmt.Fprintf(w, "  removed  %s\n", p)
	}
	for _, p := range d.Changed {
		fmt.Fprintf(w, "  changed  %s\n", p)
	}
	fmt.Fprintf(w, "  %d added, %d removed, %d changed, %d unchanged\n", len(d.Added), len(d.Removed), len(d.Changed), d.Unchanged)
	return nil
}
