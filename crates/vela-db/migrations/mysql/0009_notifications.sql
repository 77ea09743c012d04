-- The notification outbox: each change writes its notifications (oslo.messaging's message,
-- JSON) in its own transaction, and a sender publishes them in seq order and then deletes them.
-- One node sends at a time: the one holding notification_sender's lease. MEDIUMTEXT: an image
-- payload carries up to 256 KiB of metadata.
CREATE TABLE IF NOT EXISTS notification_outbox (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    priority VARCHAR(8) NOT NULL,
    message MEDIUMTEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS notification_sender (
    id INTEGER NOT NULL PRIMARY KEY,
    holder VARCHAR(255),
    lease_until BIGINT NOT NULL
);
INSERT IGNORE INTO notification_sender (id, holder, lease_until) VALUES (1, NULL, 0)
