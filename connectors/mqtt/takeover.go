package mqtt

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/redact"
)

// TakeoverAlertRule is the rule of the engine alert a source raises while
// another client keeps taking over its session.
const TakeoverAlertRule = "mqtt_session_takeover"

// takeoverQuiet is how long a source's connection must hold, with no
// takeover, before its takeover alert clears.
const takeoverQuiet = time.Minute

// takeoverAlarm raises an engine alert at the first takeover of an episode
// and clears it once the connection has held for takeoverQuiet. Its methods
// are called from the client's goroutines.
type takeoverAlarm struct {
	asset, client string
	shared        *engine.Shared
	mem           memory.Allocator
	log           *slog.Logger
	quiet         time.Duration

	mu     sync.Mutex
	raised bool
	since  time.Time // first takeover of the episode
	last   time.Time // latest takeover
	timer  *time.Timer
}

// takenOver notes a takeover at now.
func (a *takeoverAlarm) takenOver(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = now
	if a.raised {
		return
	}
	a.raised, a.since = true, now
	a.raise(engine.EngineAlert{State: engine.AlertRaised, Occur: now,
		Content: fmt.Sprintf("another client keeps connecting to the broker with the client id of %s (%s) and may receive its messages", a.asset, a.client)})
}

// up notes a connection: the alert clears if it holds.
func (a *takeoverAlarm) up() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.raised {
		return
	}
	if a.timer != nil {
		a.timer.Stop()
	}
	a.timer = time.AfterFunc(a.quiet, a.settle)
}

// settle clears the alert when no takeover happened for the quiet period.
func (a *takeoverAlarm) settle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if !a.raised || now.Sub(a.last) < a.quiet {
		return
	}
	a.raised = false
	a.raise(engine.EngineAlert{State: engine.AlertCleared, Occur: a.since, Recover: now,
		Content: fmt.Sprintf("the connection of %s has held for %s: no more takeovers", a.asset, a.quiet)})
}

// stop cancels a pending clear; the alert stays as it is.
func (a *takeoverAlarm) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
	}
}

func (a *takeoverAlarm) raise(al engine.EngineAlert) {
	al.ID = engine.EngineAlertID(TakeoverAlertRule, a.asset, strconv.FormatInt(a.since.UnixMilli(), 10))
	al.Asset, al.Rule, al.Severity, al.Type, al.Value = a.asset, TakeoverAlertRule, "critical", "security", 0
	if engine.RaiseAlert(a.shared, a.mem, al) == 0 {
		a.log.Warn("no sink carries engine alerts: the session takeover alert stays in the log only", "state", al.State)
	}
}

// maskURLs returns the URLs with their passwords masked, for logs.
func maskURLs(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redact.String(u)
	}
	return out
}
