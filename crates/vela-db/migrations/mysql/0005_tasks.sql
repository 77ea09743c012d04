-- Tasks: asynchronous work on images (imports, location imports). A node running a task holds
-- a lease (lease_until) that it renews; an expired lease means the node stopped, and any node
-- may then fail the task and undo what it started. input and result are JSON object text.
CREATE TABLE IF NOT EXISTS tasks (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    type VARCHAR(30) NOT NULL,
    status VARCHAR(30) NOT NULL,
    owner VARCHAR(255),
    user_id VARCHAR(255),
    request_id VARCHAR(64),
    image_id VARCHAR(36),
    input TEXT,
    result TEXT,
    message TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    deleted_at BIGINT,
    lease_until BIGINT,
    runner VARCHAR(255)
);
CREATE INDEX IF NOT EXISTS ix_tasks_created ON tasks (created_at, id);
CREATE INDEX IF NOT EXISTS ix_tasks_image ON tasks (image_id);
CREATE INDEX IF NOT EXISTS ix_tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS ix_tasks_expires ON tasks (expires_at)
