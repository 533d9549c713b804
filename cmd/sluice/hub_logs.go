//go:build !sluice_lean

package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/logquery"
)

func newHubLogsCmd(g *globals) *cobra.Command {
	var (
		filters  logFilterFlags
		client   hubClientFlags
		maxBytes int
		wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "logs EDGE [--level warn] [--since 1h] [--until T] [--pipeline P] [--component C] [--grep RE] [--limit N] [--max-bytes N] [--wait D] [--json]",
		Short: "Query an online edge's log file through the hub",
		Long: `Logs asks the hub, which asks the edge over NATS (subject sluice.<edge>.logs),
for the records of the edge's log file that pass the filters; they are those
of sluice logs on the edge. The edge must be online: an edge that is not
connected is an error (exit 1), unless --wait gives it time to connect (the
hub asks again every few seconds, at most 5m). The edge's answer holds at most --max-bytes
of records (the newest); older matches left out are said on stderr.

Exit codes: 0 done (also when nothing matched), 1 failed (the edge is
offline or did not answer), 64 a bad command line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := filters.query(time.Now())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if maxBytes < logquery.MinAnswerBytes || maxBytes > logquery.MaxAnswerBytes {
				return &exitError{code: exitUsage, err: fmt.Errorf("--max-bytes: %d is not from %d to %d", maxBytes, logquery.MinAnswerBytes, logquery.MaxAnswerBytes)}
			}
			c, err := client.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if wait < 0 || wait > server.MaxLogsWait {
				return &exitError{code: exitUsage, err: fmt.Errorf("--wait: %v is not from 0 to %v", wait, server.MaxLogsWait)}
			}
			ans, err := c.EdgeLogs(cmd.Context(), args[0], logquery.RequestOf(q, maxBytes), wait)
			if err != nil {
				return failed(err)
			}
			for _, rec := range ans.Records {
				if err := writeRecord(g.stdout, rec, client.asJSON); err != nil {
					return failed(err)
				}
			}
			if ans.Truncated {
				fmt.Fprintf(g.stderr, "older matching records are not shown (--limit %d, --max-bytes %d)\n", q.Limit, maxBytes)
			}
			reportSkipped(g.stderr, ans.Stats)
			return nil
		},
	}
	filters.register(cmd)
	client.register(cmd)
	cmd.Flags().DurationVar(&wait, "wait", 0, "when the edge is not connected, wait this long for it (at most 5m)")
	cmd.Flags().IntVar(&maxBytes, "max-bytes", logquery.DefaultAnswerBytes, "most bytes of records in the edge's answer")
	return cmd
}
