-- The notification outbox: each change writes its notifications (oslo.messaging's message,
-- JSON) in its own transaction, and a sender publishes them in seq order and then deletes them.
-- One node sends at a time: the one holding notification_sender's lease.
CREATE TABLE notification_outbox (
    seq INTEGER PRIMARY KEY,
    priority VARCHAR(8) NOT NULL,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE notification_sender (
    id INTEGER NOT NULL PRIMARY KEY,
    holder VARCHAR(255),
    lease_until BIGINT NOT NULL
);
INSERT INTO notification_sender (id, holder, lease_until) VALUES (1, NULL, 0)
