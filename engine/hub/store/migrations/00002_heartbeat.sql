-- What an edge's heartbeat says beyond its labels: the pipelines it runs,
-- its backlog, its software, the heartbeat itself; and edges registered by
-- a release before the hub heard of them (first and last seen unknown).

-- +goose Up
ALTER TABLE edges
    ALTER COLUMN first_seen DROP NOT NULL,
    ALTER COLUMN last_seen DROP NOT NULL,
    ADD COLUMN running       jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN backlog       bigint      NOT NULL DEFAULT 0,
    ADD COLUMN software      text        NOT NULL DEFAULT '',
    ADD COLUMN heartbeat     jsonb,
    ADD COLUMN heartbeat_at  timestamptz,
    ADD COLUMN registered_at timestamptz;

-- +goose Down
DELETE FROM edges WHERE first_seen IS NULL OR last_seen IS NULL;
ALTER TABLE edges
    DROP COLUMN registered_at,
    DROP COLUMN heartbeat_at,
    DROP COLUMN heartbeat,
    DROP COLUMN software,
    DROP COLUMN backlog,
    DROP COLUMN running,
    ALTER COLUMN last_seen SET NOT NULL,
    ALTER COLUMN first_seen SET NOT NULL;
