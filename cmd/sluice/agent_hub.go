package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/hub/hubcontrol"
	"github.com/sluice-edge/sluice/engine/hub/hubsync"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/uplink"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/pipelines"
)

// hubCloseTimeout bounds how long a stopping edge keeps publishing its
// reports and heartbeats; what is left stays buffered for the next start.
const hubCloseTimeout = 10 * time.Second

// hubLink is an edge's link to its hub (the hub section of sluice.yaml):
// the NATS connection, the uplink of reports and heartbeats, and, once
// started, the release sync and the heartbeat loop.
type hubLink struct {
	cfg *agent.Config
	log *slog.Logger
	nc  *natsgo.Conn
	js  jetstream.JetStream
	up  atomic.Pointer[uplink.Uplink]

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopLogs stops answering the hub's log queries.
	stopLogs func()
}

// onReport hands the agent's reports to the uplink once it is open; it is
// the agent's Options.OnReport. A report made before (or after) stays in
// reports.jsonl, which the uplink reads at its next opening.
func (h *hubLink) onReport(r agent.Report) {
	if h == nil {
		return
	}
	if u := h.up.Load(); u != nil {
		if err := u.Report(r); err != nil {
			h.log.Warn("hub: the report waits for the next start", "report", r.String(), "err", err)
		}
	}
}

// openHub connects to the hub (in the background: the servers may be
// down) and opens the uplink, which stores the reports of reports.jsonl
// the hub may not have. It returns nil without a hub section.
func openHub(cfg *agent.Config, log *slog.Logger) (*hubLink, error) {
	if cfg.Hub == nil {
		return nil, nil
	}
	h := &hubLink{cfg: cfg, log: log}
	nc, err := uplink.Dial(cfg.Hub, "sluice edge "+cfg.Edge, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.nc, h.js = nc, js
	// The hub may ask for this edge's log (sluice hub logs).
	if h.stopLogs, err = uplink.ServeLogs(nc, cfg.Edge, logfile.Dir(cfg.DataDir), log); err != nil {
		nc.Close()
		return nil, fmt.Errorf("hub: %w", err)
	}
	return h, nil
}

// openUplink opens the uplink; the agent is open (its lock held), so
// reports.jsonl does not change under it.
func (h *hubLink) openUplink(a *agent.Agent) error {
	u, err := uplink.Open(uplink.Options{
		JS: h.js, Edge: h.cfg.Edge, Dir: filepath.Join(h.cfg.DataDir, "hub"), AgentDir: a.Dir(),
		ReportsMaxBytes: h.cfg.Hub.ReportsMaxBytes, HeartbeatMaxBytes: h.cfg.Hub.HeartbeatMaxBytes, Log: h.log,
	})
	if err != nil {
		return err
	}
	h.up.Store(u)
	return nil
}

// arbiterRecords reads the arbiter's records for hubcontrol.Records.
type arbiterRecords struct{ a *control.Arbiter }

func (s arbiterRecords) Get(id string) (command.Command, bool) { return s.a.Get(id) }

func (s arbiterRecords) Audit(id string) []command.Transition {
	return s.a.Audit(control.Filter{ID: id, Limit: protocol.MaxRecordAudit})
}

// Events returns the arbiter's audit entries without a command (lease
// events) after seq after, all of them: read from the tracker's audit, as
// Arbiter.Audit answers only its last 1,000 entries, command transitions
// included.
func (s arbiterRecords) Events(after uint64) []command.Transition {
	return slices.DeleteFunc(s.a.Tracker().AuditAfter(after), func(tr command.Transition) bool { return tr.ID != "" })
}

func (s arbiterRecords) Since(v uint64) []command.Command {
	return s.a.Tracker().List(func(c *command.Command) bool { return c.Version > v })
}

// start runs the release sync and the heartbeat loop until ctx ends or
// close is called; with an arbiter (a control section), it also follows
// the commands the hub sends and sends the arbiter's command records, of
// every origin, back to the hub.
func (h *hubLink) start(ctx context.Context, a *agent.Agent, rt *pipelines.Runtime, arb *control.Arbiter) {
	ctx, h.cancel = context.WithCancel(ctx)
	u := h.up.Load()
	if arb != nil {
		recs := hubcontrol.NewRecords(arbiterRecords{arb}, u, hubcontrol.RecordsOptions{
			Cursor: filepath.Join(h.cfg.DataDir, "hub", "control.cursor"), Log: h.log})
		h.wg.Add(2)
		go func() { defer h.wg.Done(); recs.Run(ctx) }()
		go func() {
			defer h.wg.Done()
			_ = hubcontrol.Follow(ctx, h.js, h.cfg.Edge, arb, hubcontrol.Options{Log: h.log, OnRefused: func(c command.Command, audit []command.Transition) {
				if err := u.CommandRecord(c, audit); err != nil {
					h.log.Warn("hub: a refused command is not reported", "id", c.ID, "err", err)
				}
			}})
		}()
	}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		_ = hubsync.Sync(ctx, h.js, h.cfg.Edge, a, hubsync.Options{
			Current:        hubsync.AgentCurrent(a),
			MaxBundleBytes: h.cfg.MaxBundleBytes,
			Log:            h.log,
			OnOutcome:      u.Outcome,
		})
	}()
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(h.cfg.Hub.Heartbeat)
		defer t.Stop()
		for {
			if err := u.Heartbeat(heartbeatOf(h.cfg, a, rt)); err != nil {
				h.log.Warn("hub: heartbeat not stored", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	h.log.Info("hub: following the desired release and reporting", "edge", h.cfg.Edge, "heartbeat", h.cfg.Hub.Heartbeat.String())
}

// heartbeatOf describes the edge now.
func heartbeatOf(cfg *agent.Config, a *agent.Agent, rt *pipelines.Runtime) uplink.Heartbeat {
	hb := uplink.Heartbeat{Time: time.Now().UTC(), Labels: cfg.Labels, Software: version}
	if c := a.Current(); c != nil {
		hb.Bundle, hb.Version = c.Name, c.Version
	}
	for _, s := range rt.Status() {
		hb.Running = append(hb.Running, uplink.Running{Pipeline: s.Name, State: s.State})
	}
	for _, b := range pipelines.Backlogs(rt.Pipelines()) {
		hb.Backlog += b.Rows
	}
	return hb
}

// close stops the sync and the heartbeats, lets the uplink publish what
// it can within hubCloseTimeout, and closes the connection.
func (h *hubLink) close() {
	if h == nil {
		return
	}
	if h.cancel != nil {
		h.cancel()
	}
	h.wg.Wait()
	h.stopLogs()
	if u := h.up.Swap(nil); u != nil {
		ctx, cancel := context.WithTimeout(context.Background(), hubCloseTimeout)
		if err := u.Close(ctx); err != nil {
			h.log.Warn("hub: closing the uplink", "err", err)
		}
		cancel()
		if r, hb := u.Left(); r.Rows > 0 || hb.Rows > 0 {
			h.log.Info("hub: reports and heartbeats left buffered for the next start", "reports", r.Rows, "heartbeats", hb.Rows)
		}
	}
	h.nc.Close()
}
