-- Token signing keys rotate: the newest key without retire_at signs; a key with retire_at
-- still verifies tokens until that instant (microseconds since the epoch), then goes.
ALTER TABLE identity_keys ADD COLUMN IF NOT EXISTS retire_at BIGINT
