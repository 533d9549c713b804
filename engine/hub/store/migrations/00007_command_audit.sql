-- The last audit entries of an edge's command record, as the edge sent
-- them with the record (JSON array, oldest first).

-- +goose Up
ALTER TABLE commands ADD COLUMN audit jsonb;

-- +goose Down
ALTER TABLE commands DROP COLUMN audit;
