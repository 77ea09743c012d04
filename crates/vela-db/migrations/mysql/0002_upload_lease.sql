-- Uploads in progress hold a lease that their node renews; an expired lease means the node
-- stopped and another node may return the image to queued.
ALTER TABLE images ADD COLUMN IF NOT EXISTS upload_lease_until BIGINT
