package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/agent/localapi"
	"github.com/sluice-edge/sluice/engine/agent/statuspage"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/engine/logquery"
	"github.com/sluice-edge/sluice/pipelines"
)

const (
	// statusApplies is how many applies the page lists.
	statusApplies = 20
	// statusWarnings is how many warnings of the last statusWarnSince the
	// page lists; they are read again at most every statusWarnEvery.
	statusWarnings   = 20
	statusWarnSince  = time.Hour
	statusWarnEvery  = 5 * time.Second
	statusWarnBytes  = 64 << 10
	statusWarnSearch = 2 * time.Second
	// statusCommandsN is how many of the arbiter's newest commands the
	// page lists.
	statusCommandsN = 20
)

// statusRoute is the edge's status page (statuspage) on the local API's
// listener, behind the same token. hw, when not nil, gives the active
// health alerts; ctl, when it holds an arbiter, the recent commands.
func statusRoute(cfg *agent.Config, token string, a *agent.Agent, rt *pipelines.Runtime, hw *pipelines.HealthWatcher, ctl *edgeControl, log *slog.Logger) (localapi.Route, error) {
	src := &statusSource{cfg: cfg, a: a, rt: rt, hw: hw}
	if ctl != nil && ctl.arbiter != nil {
		src.arbiter = ctl.arbiter
	}
	h, err := statuspage.New(statuspage.Options{Token: token, Snapshot: src.snapshot, Log: log})
	if err != nil {
		return localapi.Route{}, err
	}
	return localapi.Route{Pattern: statuspage.Prefix, Handler: h, OwnAuth: true}, nil
}

// statusSource takes the snapshots of the status page; it rereads the
// apply history only after an apply and the log at most every few
// seconds.
type statusSource struct {
	cfg *agent.Config
	a   *agent.Agent
	rt  *pipelines.Runtime
	hw  *pipelines.HealthWatcher
	// arbiter, when not nil, gives the recent commands.
	arbiter *control.Arbiter

	mu        sync.Mutex
	lastApply time.Time
	applies   []statuspage.Apply
	warnAt    time.Time
	warnings  []statuspage.Warning
	warnNote  string
}

func (s *statusSource) snapshot() statuspage.View {
	st := s.a.Status()
	v := statuspage.View{Edge: st.Edge, Time: time.Now().UTC(), Software: version, Pending: st.Pending}
	if st.Current != nil {
		v.Bundle, v.Version = st.Current.Name, st.Current.Version
	}
	v.Pipelines, v.Sinks = pipelines.StatusView(s.rt.Pipelines(), s.rt.Status())
	if s.hw != nil {
		v.HealthAlerts = true
		for _, h := range s.hw.Active() {
			v.Alerts = append(v.Alerts, statuspage.Alert{Asset: healthAsset(h), Type: h.Type, Name: h.Rule,
				Severity: h.Severity, Message: h.Content, Since: h.Occur})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.Last != nil && (s.applies == nil || !st.Last.Time.Equal(s.lastApply)) {
		s.lastApply = st.Last.Time
		s.applies = s.readApplies()
	}
	v.Applies = s.applies
	if time.Since(s.warnAt) >= statusWarnEvery {
		s.warnAt = time.Now()
		s.warnings, s.warnNote = s.readWarnings()
	}
	v.Warnings, v.WarningsNote = s.warnings, s.warnNote
	if s.arbiter != nil {
		v.Control = true
		v.Commands = statusCommands(s.arbiter.List(control.Filter{Limit: statusCommandsN}))
	}
	return v
}

// statusCommands are the page's rows of the arbiter's records (oldest
// first), newest first.
func statusCommands(recs []control.Record) []statuspage.Command {
	out := make([]statuspage.Command, 0, len(recs))
	for _, c := range slices.Backward(recs) {
		in := ""
		if len(c.Inputs) > 0 {
			if b, err := json.Marshal(c.Inputs); err == nil {
				in = string(b)
			}
		}
		out = append(out, statuspage.Command{ID: c.ID, Product: c.Product, Asset: c.Asset, Service: c.Service, Inputs: in,
			Origin: c.Origin, Class: c.Class, Status: string(c.Status), Reason: c.Reason, Created: c.Created, Updated: c.Updated})
	}
	return out
}

// readApplies reads the newest applies of the agent's reports, newest
// first.
func (s *statusSource) readApplies() []statuspage.Apply {
	reps, err := agent.ReadReports(s.cfg.AgentDir(), agent.DefaultMaxReportBytes)
	if err != nil && len(reps) == 0 {
		return nil
	}
	if len(reps) > statusApplies {
		reps = reps[len(reps)-statusApplies:]
	}
	out := make([]statuspage.Apply, 0, len(reps))
	for _, r := range slices.Backward(reps) {
		out = append(out, statuspage.Apply{Time: r.Time, Bundle: r.Bundle, Version: r.Version, Outcome: r.Outcome, Reason: r.Reason})
	}
	return out
}

// readWarnings reads the newest warnings and errors of the log file.
func (s *statusSource) readWarnings() ([]statuspage.Warning, string) {
	ctx, cancel := context.WithTimeout(context.Background(), statusWarnSearch)
	defer cancel()
	res, err := logquery.Search(ctx, logfile.Dir(s.cfg.DataDir), logquery.Query{Level: slog.LevelWarn,
		Since: time.Now().Add(-statusWarnSince), Limit: statusWarnings, MaxBytes: statusWarnBytes})
	if err != nil {
		return nil, "the log file could not be read: " + err.Error()
	}
	out := make([]statuspage.Warning, 0, len(res.Entries))
	for _, e := range slices.Backward(res.Entries) {
		var b strings.Builder
		if logquery.Format(&b, e.Line) != nil {
			continue
		}
		out = append(out, statuspage.Warning{Time: e.Time, Level: e.Level.String(), Text: strings.TrimRight(b.String(), "\n")})
	}
	return out, ""
}

// healthAsset names what a health alert is about: its pipeline and
// component out of its id (rule/pipeline/component/episode), or else its
// asset.
func healthAsset(h engine.EngineAlert) string {
	rest, ok := strings.CutPrefix(h.ID, h.Rule+"/")
	if i := strings.LastIndexByte(rest, '/'); ok && i > 0 {
		return rest[:i]
	}
	return h.Asset
}
