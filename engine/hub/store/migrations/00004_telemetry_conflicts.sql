-- Rows that reuse the key (edge, stream, seq) of a stored row with other
-- content (event time, asset or values): not a redelivery but a new row,
-- typically of an edge whose buffer was reset and whose sequences started
-- again at 1. telemetry keeps the row it stored first; every other
-- content is kept here once, keyed by a digest of that content, with the
-- message that carried it and the message id of the stored row.

-- +goose Up
CREATE TABLE telemetry_conflicts (
    edge          text        NOT NULL,
    stream        text        NOT NULL,
    seq           bigint      NOT NULL,
    digest        text        NOT NULL,
    msg_id        text        NOT NULL,
    asset         text        NOT NULL,
    time          timestamptz NOT NULL,
    backfill      boolean     NOT NULL,
    "values"      jsonb       NOT NULL,
    stored_msg_id text        NOT NULL,
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (edge, stream, seq, digest)
);
CREATE INDEX telemetry_conflicts_received_at ON telemetry_conflicts (received_at);

-- +goose Down
DROP TABLE telemetry_conflicts;
