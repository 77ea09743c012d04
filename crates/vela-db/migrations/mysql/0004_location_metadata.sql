-- A location's metadata (JSON object text), as a client gave it when adding the location;
-- NULL for data Vela stored itself.
ALTER TABLE image_locations ADD COLUMN IF NOT EXISTS metadata TEXT
