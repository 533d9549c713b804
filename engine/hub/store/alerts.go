package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// Alert states.
const (
	AlertRaised  = "raised"
	AlertCleared = "cleared"
)

// AlertRecord is one state change of one alert, as an edge sends it (the
// engine's alert schema plus the edge and the rule-set version).
type AlertRecord struct {
	// ID is the same on the raise and on the clear record; with Edge it
	// identifies the alert (the ids of two edges may be equal).
	ID, Edge, Asset, Rule, Severity, Type, Content string
	// Value may be NaN or ±Inf: the value column is a float8.
	Value float64
	// Occur is when the condition began; Recover when it ended (zero
	// while raised).
	Occur, Recover time.Time
	// State is AlertRaised or AlertCleared.
	State string
	// RuleSetVersion names the rule set that raised the alert.
	RuleSetVersion string
}

// At is the time of the change: Recover for a clear (Occur when Recover
// is zero), Occur for a raise.
func (a AlertRecord) At() time.Time {
	if a.State == AlertCleared && !a.Recover.IsZero() {
		return a.Recover
	}
	return a.Occur
}

// Alert is the current state of one alert.
type Alert struct {
	AlertRecord
	// ChangedAt is the time of the change the state comes from; UpdatedAt
	// when the hub stored it.
	ChangedAt, UpdatedAt time.Time
}

// ApplyAlert records the transition a carried by message msgID and
// updates the alert's current state when the transition is newer than the
// one it holds: a later time wins, and at equal times a clear wins over a
// raise. A msgID already recorded is a no-op. So records arriving in any
// order (backfill after an outage, redelivery) converge to the edge's
// state, and a late raise older than the stored clear does not reopen it.
// An alert is identified by its edge and id: a record of one edge never
// changes the alert of another edge with the same id.
func (s *Store) ApplyAlert(ctx context.Context, a AlertRecord, msgID string) error {
	if err := s.checkTexts("msg id", msgID, "id", a.ID, "edge", a.Edge, "asset", a.Asset, "rule", a.Rule,
		"severity", a.Severity, "type", a.Type, "content", a.Content, "rule set version", a.RuleSetVersion); err != nil {
		return fmt.Errorf("hub store: alert %q: %w", a.ID, err)
	}
	if err := checkTimes("occur time", a.Occur, "recover time", a.Recover); err != nil {
		return fmt.Errorf("hub store: alert %q: %w", a.ID, err)
	}
	if msgID == "" || a.ID == "" {
		return invalidError{fmt.Errorf("hub store: alert %q: empty alert or message id", a.ID)}
	}
	if a.State != AlertRaised && a.State != AlertCleared {
		return invalidError{fmt.Errorf("hub store: alert %q: state %q, want raised or cleared", a.ID, a.State)}
	}
	var recov *time.Time
	if !a.Recover.IsZero() {
		recov = &a.Recover
	}
	at := a.At()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
INSERT INTO alert_transitions (msg_id, alert_id, edge, state, time, value)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (msg_id) DO NOTHING`, msgID, a.ID, a.Edge, a.State, at, a.Value)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `
INSERT INTO alerts_current (id, edge, asset, rule, severity, type, content, value, occur_time,
  recover_time, state, rule_set_version, changed_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (edge, id) DO UPDATE SET
  asset = EXCLUDED.asset, rule = EXCLUDED.rule, severity = EXCLUDED.severity,
  type = EXCLUDED.type, content = EXCLUDED.content, value = EXCLUDED.value,
  occur_time = EXCLUDED.occur_time, recover_time = EXCLUDED.recover_time, state = EXCLUDED.state,
  rule_set_version = EXCLUDED.rule_set_version, changed_at = EXCLUDED.changed_at,
  updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.changed_at, EXCLUDED.state = 'cleared') > (alerts_current.changed_at, alerts_current.state = 'cleared')`,
			a.ID, a.Edge, a.Asset, a.Rule, a.Severity, a.Type, a.Content, a.Value, a.Occur,
			recov, a.State, a.RuleSetVersion, at, s.opts.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("hub store: alert %q (message %s): %w", a.ID, msgID, err)
	}
	return nil
}

// ApplyAlerts applies alerts, each as ApplyAlert does with the message id
// of the same index, in one transaction: one commit for them all, where
// a transaction each held a consumer to about 100 records a second (a
// commit waits for the disk). They are applied in the order of their
// edge and id, so that instances applying batches at once take the rows'
// locks in one order; the order of records does not change the outcome.
// When one fails nothing is applied, and the error is a *RowError whose
// Index is that record's.
func (s *Store) ApplyAlerts(ctx context.Context, alerts []AlertRecord, msgIDs []string) error {
	if len(alerts) != len(msgIDs) {
		return fmt.Errorf("hub store: %d alert records and %d message ids", len(alerts), len(msgIDs))
	}
	order := make([]int, len(alerts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		x, y := &alerts[order[a]], &alerts[order[b]]
		return x.Edge < y.Edge || x.Edge == y.Edge && x.ID < y.ID
	})
	return s.InTx(ctx, func(tx *Store) error {
		for _, i := range order {
			if err := tx.ApplyAlert(ctx, alerts[i], msgIDs[i]); err != nil {
				return &RowError{Index: i, Err: err}
			}
		}
		return nil
	})
}

// Alerts lists current alerts by asset, id and edge: only raised ones
// when activeOnly, only those of asset when it is not empty. It holds the
// whole listing: AlertsAfter reads it page by page.
func (s *Store) Alerts(ctx context.Context, activeOnly bool, asset string) ([]Alert, error) {
	var out []Alert
	err := s.AlertsAfter(ctx, activeOnly, asset, nil, 0, func(a Alert) bool {
		out = append(out, a)
		return true
	})
	return out, err
}

// Transition is one recorded change of an alert.
type Transition struct {
	MsgID, AlertID, Edge, State string
	Time                        time.Time
	Value                       float64
}

// Transitions lists the recorded changes of alert id of edge in time
// order (a clear after a raise at equal times). The alerts of other edges
// with the same id are not among them.
func (s *Store) Transitions(ctx context.Context, edge, id string) ([]Transition, error) {
	rows, err := s.db.Query(ctx, `
SELECT msg_id, alert_id, edge, state, time, value FROM alert_transitions
WHERE edge = $1 AND alert_id = $2 ORDER BY time, state = 'cleared', msg_id`, edge, id)
	if err != nil {
		return nil, fmt.Errorf("hub store: transitions of %q of edge %q: %w", id, edge, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Transition])
	if err != nil {
		return nil, fmt.Errorf("hub store: transitions of %q of edge %q: %w", id, edge, err)
	}
	return out, nil
}

// TransitionKey is the position of a transition in the newest-first
// history of an alert: its time and message id.
type TransitionKey struct {
	Time  time.Time
	MsgID string
}

// TransitionsBefore calls f with the recorded changes of alert id of edge,
// newest first (by time, then message id), after the key after (from the
// newest when nil), at most limit, until f returns false.
func (s *Store) TransitionsBefore(ctx context.Context, edge, id string, after *TransitionKey, limit int, f func(Transition) bool) error {
	q := `SELECT msg_id, alert_id, edge, state, time, value FROM alert_transitions
WHERE edge = $1 AND alert_id = $2 ORDER BY time DESC, msg_id DESC LIMIT $3`
	args := []any{edge, id, limit}
	if after != nil {
		q = `SELECT msg_id, alert_id, edge, state, time, value FROM alert_transitions
WHERE edge = $1 AND alert_id = $2 AND (time, msg_id) < ($4, $5) ORDER BY time DESC, msg_id DESC LIMIT $3`
		args = append(args, after.Time, after.MsgID)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("hub store: history of %q of edge %q: %w", id, edge, err)
	}
	defer rows.Close()
	for rows.Next() {
		var t Transition
		if err := rows.Scan(&t.MsgID, &t.AlertID, &t.Edge, &t.State, &t.Time, &t.Value); err != nil {
			return fmt.Errorf("hub store: history of %q of edge %q: %w", id, edge, err)
		}
		if !f(t) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub store: history of %q of edge %q: %w", id, edge, err)
	}
	return nil
}
