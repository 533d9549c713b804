-- Hub state: edges, bundles, releases, apply reports, alerts, telemetry.
-- Tables are created unqualified: the store sets search_path to its schema.

-- +goose Up
CREATE TABLE edges (
    id             text PRIMARY KEY,
    labels         jsonb       NOT NULL DEFAULT '{}',
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    bundle         text        NOT NULL DEFAULT '',
    version        bigint      NOT NULL DEFAULT 0,
    last_report    jsonb,
    last_report_at timestamptz
);
CREATE INDEX edges_last_seen ON edges (last_seen);

CREATE TABLE bundles (
    name    text        NOT NULL,
    version bigint      NOT NULL,
    digest  text        NOT NULL,
    size    bigint      NOT NULL,
    created timestamptz NOT NULL,
    signer  text        NOT NULL DEFAULT '',
    PRIMARY KEY (name, version)
);

CREATE TABLE releases (
    id          bigserial PRIMARY KEY,
    bundle      text        NOT NULL,
    version     bigint      NOT NULL,
    target_kind text        NOT NULL CHECK (target_kind IN ('edge', 'label', 'all')),
    target      text        NOT NULL DEFAULT '',
    released_by text        NOT NULL DEFAULT '',
    released_at timestamptz NOT NULL,
    FOREIGN KEY (bundle, version) REFERENCES bundles (name, version)
);

CREATE TABLE release_edges (
    release_id bigint      NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    edge       text        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('pending', 'applied', 'rejected', 'offline')),
    reason     text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL,
    PRIMARY KEY (release_id, edge)
);
CREATE INDEX release_edges_edge ON release_edges (edge);

CREATE TABLE apply_reports (
    edge     text        NOT NULL,
    time     timestamptz NOT NULL,
    bundle   text        NOT NULL,
    version  bigint      NOT NULL,
    outcome  text        NOT NULL,
    reason   text        NOT NULL DEFAULT '',
    location text        NOT NULL DEFAULT '',
    steps    text        NOT NULL DEFAULT '',
    PRIMARY KEY (edge, time, bundle, version, outcome)
);

CREATE TABLE alerts_current (
    id               text PRIMARY KEY,
    edge             text             NOT NULL,
    asset            text             NOT NULL,
    rule             text             NOT NULL,
    severity         text             NOT NULL,
    type             text             NOT NULL,
    content          text             NOT NULL,
    value            double precision NOT NULL,
    occur_time       timestamptz      NOT NULL,
    recover_time     timestamptz,
    state            text             NOT NULL CHECK (state IN ('raised', 'cleared')),
    rule_set_version text             NOT NULL DEFAULT '',
    changed_at       timestamptz      NOT NULL,
    updated_at       timestamptz      NOT NULL
);
CREATE INDEX alerts_current_asset_state ON alerts_current (asset, state);
CREATE INDEX alerts_current_state ON alerts_current (state);

CREATE TABLE alert_transitions (
    msg_id   text PRIMARY KEY,
    alert_id text             NOT NULL,
    edge     text             NOT NULL,
    state    text             NOT NULL CHECK (state IN ('raised', 'cleared')),
    time     timestamptz      NOT NULL,
    value    double precision NOT NULL
);
CREATE INDEX alert_transitions_alert_time ON alert_transitions (alert_id, time);

CREATE TABLE telemetry (
    edge     text        NOT NULL,
    stream   text        NOT NULL,
    seq      bigint      NOT NULL,
    msg_id   text        NOT NULL,
    asset    text        NOT NULL,
    time     timestamptz NOT NULL,
    backfill boolean     NOT NULL,
    "values" jsonb       NOT NULL,
    PRIMARY KEY (edge, stream, seq)
);
CREATE INDEX telemetry_edge_stream_time ON telemetry (edge, stream, time);
CREATE INDEX telemetry_asset_time ON telemetry (asset, time);

-- +goose Down
DROP TABLE telemetry;
DROP TABLE alert_transitions;
DROP TABLE alerts_current;
DROP TABLE apply_reports;
DROP TABLE release_edges;
DROP TABLE releases;
DROP TABLE bundles;
DROP TABLE edges;
