package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	natssink "github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

func newReplayCmd(g *globals) *cobra.Command {
	var (
		opts       ops.ReplayOptions
		sinkConfig string
		sinkName   string
		typ        string
		sets       []string
		dataDir    string
		progress   string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "replay FILE|DIR... (--sink-config sink.yaml | --type TYPE --set field=value...)",
		Short: "Send exported Parquet files to a sink with their stable message IDs (backfill)",
		Long: `Replay sends files written by ` + "`sluice export`" + ` (or buffer segments) to a
cloud-bound sink's broker, as the edge's forwarder would have: the same
messages with the same IDs (<edge>/<stream>/<seq> or <edge>/<stream>/<first>-<last>,
cut where the files' _msg column says, as the buffer cut them when the rows
were accepted) and metadata, flagged backfill=true, in sequence order per
edge and stream. Segment files of a buffer directory take their edge and
stream from the buffer's meta file. A receiver that deduplicates by ID
(NATS JetStream within its duplicate window, the postgres sink's unique
index, consumers) stores each row once, however often it is replayed and
whether or not the same rows also came over the link.

The sink is configured like a pipeline sink: --sink-config names a YAML file
holding one sink mapping (type: nats, url: ..., subject: ...) or a pipeline
file with a sinks: section (pick one with --sink), read by the pipelines
loader (${VAR} and ${VAR:-default} are expanded); or --type and --set give
the fields on the command line (values are YAML scalars). Publish failures are
retried with the same IDs; messages the broker rejects permanently are
listed and make replay exit 1.

A nats sink signs each Nats-Msg-Id with the key of the engine's data
directory (nats-msgid.key): give that directory with --data-dir (or copy
the key into one) so that JetStream drops replayed copies of messages the
engine sent. Without it (and without sluice-data/nats-msgid.key here) the
key is made for this run: JetStream stores copies of what the engine or
another replay sent, and consumers deduplicate them by the id header.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if err := checkProgress(progress); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			// The command line is right; a missing input is a failure.
			files, err := expandFiles(args)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			dir, err := replayDataDir(dataDir)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			pub, err := buildPublisher(dir, sinkConfig, sinkName, typ, sets)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			defer pub.Close()
			opts.Publisher = pub
			opts.Log = log
			bar := newProgressBar(g, progress, "replay")
			opts.Progress = bar.update
			rep, err := ops.Replay(cmd.Context(), files, opts)
			bar.done()
			if rep != nil {
				if asJSON {
					_ = writeJSON(g.stdout, rep)
				} else {
					fmt.Fprintf(g.stdout, "replayed %d rows from %d files in %d messages (backfill=true)\n", rep.Rows, rep.Files, rep.Messages)
					for _, f := range rep.Failed {
						fmt.Fprintf(g.stdout, "  rejected: %s\n", f)
					}
				}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sinkConfig, "sink-config", "", "YAML file with the sink (type and fields), or a pipeline file with sinks:")
	f.StringVar(&sinkName, "sink", "", "with a pipeline file: the sink to use")
	f.StringVar(&typ, "type", "", "sink type ("+strings.Join(pipelines.CloudSinkNames(), ", ")+") when not using --sink-config")
	f.StringArrayVar(&sets, "set", nil, "sink field as name=value (repeatable; nested fields as tls.enabled=true)")
	f.StringVar(&opts.Edge, "edge", "", "replace the edge name recorded in the files")
	f.StringVar(&opts.Stream, "stream", "", "replace the stream name recorded in the files")
	f.StringVar(&dataDir, "data-dir", "", "data directory of the engine whose rows are replayed, holding "+natssink.KeyFile+" (default sluice-data when it holds it)")
	f.IntVar(&opts.Retries, "retries", 5, "retries of a failed publish (same IDs)")
	f.StringVar(&progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), always or never")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// expandFiles turns directories into their *.parquet files.
func expandFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		m, err := filepath.Glob(filepath.Join(a, "*.parquet"))
		if err != nil {
			return nil, err
		}
		slices.Sort(m)
		out = append(out, m...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("replay: no Parquet files in %s", strings.Join(args, " "))
	}
	return out, nil
}

// replayDataDir returns the data directory whose message ID key a replay
// uses: flag, which must hold the key, or the default data directory when
// it holds one, or "" (a key made for this run).
func replayDataDir(flag string) (string, error) {
	if flag == "" {
		if fi, err := os.Stat(filepath.Join(agent.DefaultDataDir, natssink.KeyFile)); err == nil && fi.Mode().IsRegular() {
			return agent.DefaultDataDir, nil
		}
		return "", nil
	}
	if _, err := os.Stat(filepath.Join(flag, natssink.KeyFile)); err != nil {
		return "", fmt.Errorf("replay: --data-dir %s: no message ID key: %w", flag, err)
	}
	return flag, nil
}

// buildPublisher builds the publisher from a sink file (read by the
// pipelines loader: ${VAR} expanded, errors located) or from flags. Both
// parse the configuration with the spec of the registered sink type and
// build the publisher as that sink does (see replaySink).
// dataDir is the data directory of the engine whose rows are replayed.
func buildPublisher(dataDir, file, name, typ string, sets []string) (*outbound.Publisher, error) {
	var cfg *spec.Config
	var cs *pipelines.CloudSink
	src, dir := "command line", ""
	switch {
	case file != "" && (typ != "" || len(sets) > 0):
		return nil, fmt.Errorf("replay: use either --sink-config or --type/--set")
	case file != "":
		sc, errs := pipelines.LoadSink(file, name, os.LookupEnv)
		if len(errs) > 0 {
			return nil, errs
		}
		cfg, typ, src, dir = sc.Config, sc.Type, file, sc.Dir
		var err error
		if cs, err = replaySink(src, typ); err != nil {
			return nil, err
		}
	case typ != "":
		node := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, kv := range sets {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("replay: --set %q: want name=value", kv)
			}
			setPath(node, strings.Split(k, "."), scalar(v))
		}
		var err error
		if cs, err = replaySink(src, typ); err != nil {
			return nil, err
		}
		var errs spec.Errors
		if cfg, errs = cs.Component.Spec.Parse(src, node); len(errs) > 0 {
			return nil, errs
		}
	default:
		return nil, fmt.Errorf("replay: give the sink with --sink-config FILE or --type TYPE --set name=value")
	}
	bc := engine.BuildContext{Pipeline: "replay", Name: typ, Dir: dir, DataDir: dataDir}
	return cs.NewPublisher(cfg, bc)
}

// replaySink resolves a sink type for replay: the cloud-bound sink type a
// pipeline's sink of that type is built from, so that replay publishes
// through the same registered component.
func replaySink(src, typ string) (*pipelines.CloudSink, error) {
	if _, ok := engine.Lookup(spec.KindSink, typ); !ok {
		return nil, fmt.Errorf("%s: unknown sink type %q (known: %s)", src, typ, strings.Join(pipelines.CloudSinkNames(), ", "))
	}
	cs, ok := pipelines.LookupCloudSink(typ)
	if !ok {
		return nil, fmt.Errorf("%s: %s", src, pipelines.UnknownCloudSinkError(typ))
	}
	return cs, nil
}

// scalar parses a command-line value as a YAML scalar (so 5, true and 2m
// get their types), falling back to a string.
func scalar(v string) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(v), &doc); err == nil && len(doc.Content) == 1 && doc.Content[0].Kind != yaml.MappingNode {
		return doc.Content[0]
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
}

func setPath(m *yaml.Node, path []string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == path[0] {
			if len(path) == 1 {
				m.Content[i+1] = v
				return
			}
			setPath(m.Content[i+1], path[1:], v)
			return
		}
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, v)
		return
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, key, child)
	setPath(child, path[1:], v)
}
