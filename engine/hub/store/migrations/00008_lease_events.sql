-- The audit entries of an edge's command arbiter that belong to no
-- command: leases taken, renewed, taken over, refused and released. seq is
-- the arbiter's sequence number; with the time it identifies an entry, so
-- an entry sent again is stored once.

-- +goose Up
CREATE TABLE lease_events (
    edge   text        NOT NULL,
    seq    bigint      NOT NULL,
    at     timestamptz NOT NULL,
    asset  text        NOT NULL DEFAULT '',
    origin text        NOT NULL DEFAULT '',
    reason text        NOT NULL DEFAULT '',
    PRIMARY KEY (edge, seq, at)
);

-- +goose Down
DROP TABLE lease_events;
