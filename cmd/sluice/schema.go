package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/pipelines"
)

func newSchemaCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of pipeline files (for editor completion)",
		Long: `Schema prints a JSON Schema (draft 2020-12) for pipeline files, generated from
the declarations of every source, step and sink. Point your editor's YAML
language server at it, e.g. with a first line
  # yaml-language-server: $schema=./sluice.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(pipelines.JSONSchema())
		},
	}
}

func newDocsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "docs",
		Short:  "Print the Markdown pipeline reference generated from the component declarations",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return pipelines.Reference(g.stdout)
		},
	}
}
