-- Apply reports are ordered by when they were made as far as the hub can
-- tell: their own time, or the time the hub stored them when that lies
-- ahead (an edge clock running ahead must not freeze what the edge is
-- shown to run). The report keeps its own time.

-- +goose Up
ALTER TABLE apply_reports ADD COLUMN ordered_at timestamptz;
UPDATE apply_reports SET ordered_at = least(time, now());
ALTER TABLE apply_reports ALTER COLUMN ordered_at SET NOT NULL;
CREATE INDEX apply_reports_edge_ordered ON apply_reports (edge, ordered_at);
UPDATE edges SET last_report_at = least(last_report_at, now()) WHERE last_report_at IS NOT NULL;
UPDATE release_edges SET at = least(at, now());

-- +goose Down
DROP INDEX apply_reports_edge_ordered;
ALTER TABLE apply_reports DROP COLUMN ordered_at;
