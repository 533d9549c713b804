-- Commands: those the hub issued to edges and every command record the
-- edges' arbiters send back (whatever its origin), one row per (edge, id).
-- Of two copies of a record the one with the higher version is kept; a
-- command the hub issued has version 0 until its edge reports it.

-- +goose Up
CREATE TABLE commands (
  edge       text NOT NULL,
  id         text NOT NULL,
  product    text NOT NULL DEFAULT '',
  asset      text NOT NULL,
  service    text NOT NULL,
  inputs     jsonb NOT NULL,
  origin     text NOT NULL,
  class      text NOT NULL DEFAULT '',
  status     text NOT NULL,
  reason     text NOT NULL DEFAULT '',
  expiry     timestamptz,
  created    timestamptz NOT NULL,
  updated    timestamptz NOT NULL,
  version    bigint NOT NULL DEFAULT 0,
  issued_by  text NOT NULL DEFAULT '',
  record     jsonb,
  PRIMARY KEY (edge, id)
);
CREATE INDEX commands_order ON commands (created DESC, edge DESC, id DESC);
CREATE INDEX commands_asset ON commands (asset, created DESC);

-- +goose Down
DROP TABLE commands;
