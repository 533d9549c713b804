-- An alert is the alert of one edge: alerts_current is keyed by (edge, id),
-- so that two edges whose alerts have the same id (same pipelines, assets
-- of the same names, ids from a release older than ids with the edge in
-- their hash; or an edge reusing another's ids on purpose) each keep their
-- own. Transitions find their alert by (edge, alert_id) too.

-- +goose Up
ALTER TABLE alerts_current
    DROP CONSTRAINT alerts_current_pkey,
    ADD PRIMARY KEY (edge, id);
DROP INDEX alert_transitions_alert_time;
CREATE INDEX alert_transitions_edge_alert_time ON alert_transitions (edge, alert_id, time);

-- +goose Down
-- An id held by several edges keeps the alert of the newest change (the
-- greatest edge at equal times); the others are deleted.
DELETE FROM alerts_current a USING alerts_current b
WHERE a.id = b.id AND (a.changed_at, a.edge) < (b.changed_at, b.edge);
ALTER TABLE alerts_current
    DROP CONSTRAINT alerts_current_pkey,
    ADD PRIMARY KEY (id);
DROP INDEX alert_transitions_edge_alert_time;
CREATE INDEX alert_transitions_alert_time ON alert_transitions (alert_id, time);
