//go:build !sluice_lean

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/hub/server"
)

// parseSets reads --set point=value flags: a value is a number, true or
// false, or else a string.
func parseSets(sets []string) (map[string]any, error) {
	out := map[string]any{}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want point=value", s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--set: %s given twice", k)
		}
		switch {
		case v == "true" || v == "false":
			out[k] = v == "true"
		default:
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[k] = json.Number(strconv.FormatFloat(f, 'g', -1, 64))
			} else {
				out[k] = v
			}
		}
	}
	return out, nil
}

func newHubCommandCmd(g *globals) *cobra.Command {
	var (
		f                       hubClientFlags
		asset, product, service string
		class                   string
		sets                    []string
		expire                  time.Duration
		wait                    bool
		waitFor                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "command EDGE --asset A [--product P] --set point=value [--set ...] [--service S] [--class C] [--expire 5m] [--wait] [--hub URL] [--token-file F] [--json]",
		Short: "Send a command to a device of an edge through the hub",
		Long: `Command asks the hub to issue a command to an asset of an edge: by default
a set-point (measurepoint.set) of the points given with --set, or the
service --service with those inputs. The hub records it (status issued)
and publishes it on the edge's subject of the stream SLUICE_COMMANDS, where
it waits while the edge is offline. The edge decides on it through its
command arbiter like any other command of origin cloud (classes, leases,
expiry, supersede; see docs/control.md) and reports its record back: its
status and reason show in sluice hub commands.

--expire sets the command's deadline (at most 24h): the edge never executes
it after that, whenever it arrives; it is recorded expired. A value of
--set is a number, true or false, or else a string.

--wait waits (at most --wait-for) for a final status: acked, failed,
timeout, rejected, expired or superseded.

Exit codes: 0 issued (with --wait: acked), 1 failed (with --wait: any other
final status, or none within --wait-for), 64 a bad command line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inputs, err := parseSets(sets)
			if err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("hub command: %w", err)}
			}
			if asset == "" {
				return &exitError{code: exitUsage, err: errors.New("hub command: give --asset")}
			}
			if expire <= 0 || waitFor <= 0 {
				return &exitError{code: exitUsage, err: errors.New("hub command: --expire and --wait-for must be positive")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.IssueCommand(cmd.Context(), server.CommandRequest{Edge: args[0], Product: product, Asset: asset,
				Service: service, Inputs: inputs, Class: class, ExpireIn: expire.String()})
			if err != nil {
				return failed(err)
			}
			if !wait {
				return printCommand(g.stdout, v, f.asJSON)
			}
			if !f.asJSON {
				fmt.Fprintf(g.stderr, "issued %s; waiting for its final status\n", v.ID)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), waitFor)
			defer cancel()
			got, werr := c.WaitCommand(ctx, v.Edge, v.ID, 500*time.Millisecond)
			if got.ID == "" {
				got = v
			}
			if err := printCommand(g.stdout, got, f.asJSON); err != nil {
				return err
			}
			switch {
			case werr != nil:
				return failed(fmt.Errorf("command %s: no final status within %s: %w", v.ID, waitFor, werr))
			case got.Status != "acked":
				return failed(fmt.Errorf("command %s %s: %s", v.ID, got.Status, printable(got.Reason)))
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&asset, "asset", "", "the target asset (device key)")
	cmd.Flags().StringVar(&product, "product", "", "the target's product key")
	cmd.Flags().StringVar(&service, "service", "", "the service invoked (default measurepoint.set: set the points)")
	cmd.Flags().StringVar(&class, "class", "", "priority class claimed (default: the edge's class of origin cloud)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "point=value to set, or an input of the service (repeatable)")
	cmd.Flags().DurationVar(&expire, "expire", server.DefaultCommandExpiry, "deadline from now, after which the edge never executes it (at most 24h)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the command's final status")
	cmd.Flags().DurationVar(&waitFor, "wait-for", 10*time.Minute, "with --wait, how long to wait at most")
	return cmd
}

func newHubCommandsCmd(g *globals) *cobra.Command {
	var (
		f             hubClientFlags
		asset, status string
		limit         int
		audit         bool
	)
	cmd := &cobra.Command{
		Use:   "commands [EDGE] [--asset A] [--status S] [--audit] [--limit N] [--hub URL] [--token-file F] [--json]",
		Short: "List the commands of the edges: those the hub issued and every command their arbiters recorded",
		Long: `Commands lists, newest first, the commands the hub issued and the command
records the edges' arbiters sent back, of every origin (local applications,
the cloud, third-party systems, rules), each with its status and reason as
the edge last reported it (issued: not reported yet). EDGE, --asset and
--status filter. The commands come page after page, each printed as it comes;
--limit N stops after N of them.

With --audit (and EDGE) it lists instead the audit entries of the edge's
arbiter that belong to no command, newest first: leases taken, renewed,
refused, taken over and released (--asset filters).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return &exitError{code: exitUsage, err: errors.New("hub commands: --limit must not be negative")}
			}
			if audit && (len(args) != 1 || status != "") {
				return &exitError{code: exitUsage, err: errors.New("hub commands: --audit needs EDGE and takes no --status")}
			}
			flt := server.CommandFilter{Asset: asset, Status: status}
			if len(args) == 1 {
				flt.Edge = args[0]
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			now := time.Now()
			if audit {
				return streamList(cmd.Context(), g.stdout, f.asJSON, limit, "AT\tASSET\tORIGIN\tSEQ\tEVENT",
					func(ctx context.Context, after string, n int) ([]server.LeaseEventView, string, error) {
						return c.LeaseEventsPage(ctx, flt.Edge, asset, after, n)
					}, func(w io.Writer, es []server.LeaseEventView) {
						for _, e := range es {
							fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", e.At.UTC().Format(time.RFC3339), printable(e.Asset), printable(e.Origin), e.Seq, printable(e.Reason))
						}
					})
			}
			return streamList(cmd.Context(), g.stdout, f.asJSON, limit, commandsHeader,
				func(ctx context.Context, after string, n int) ([]server.CommandView, string, error) {
					return c.CommandsPage(ctx, flt, after, n)
				}, func(w io.Writer, cs []server.CommandView) { commandRows(w, cs, now) })
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&asset, "asset", "", "only commands of this asset")
	cmd.Flags().StringVar(&status, "status", "", "only commands in this status (issued, accepted, queued, sent, acked, failed, timeout, rejected, expired, superseded)")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most the newest this many commands (0: all)")
	cmd.Flags().BoolVar(&audit, "audit", false, "list the edge's lease events (audit entries of no command) instead")
	return cmd
}

// commandsHeader heads the table of commands.
const commandsHeader = "ID\tEDGE\tASSET\tORIGIN\tSTATUS\tUPDATED\tINPUTS\tREASON"

// printCommand prints one command: as JSON, or as one line of the table.
func printCommand(w io.Writer, v server.CommandView, asJSON bool) error {
	if asJSON {
		return printJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, commandsHeader)
	commandRows(tw, []server.CommandView{v}, time.Now())
	return tw.Flush()
}

// commandRows prints the lines of cs in the table of commands.
func commandRows(tw io.Writer, cs []server.CommandView, now time.Time) {
	for _, c := range cs {
		var in []string
		for _, k := range slices.Sorted(maps.Keys(c.Inputs)) {
			in = append(in, fmt.Sprintf("%s=%v", k, c.Inputs[k]))
		}
		inputs := strings.Join(in, ",")
		if c.Service != "" && c.Service != "measurepoint.set" {
			inputs = c.Service + "(" + inputs + ")"
		}
		origin := c.Origin
		if c.Class != "" {
			origin += " (" + c.Class + ")"
		}
		reason := c.Reason
		if reason == "" {
			reason = "-"
		}
		u := c.Updated
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(c.ID), printable(c.Edge), printable(c.Asset),
			printable(origin), printable(c.Status), ago(&u, now), printable(inputs), printable(reason))
	}
}
