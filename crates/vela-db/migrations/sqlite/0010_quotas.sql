-- Unified limits of the embedded identity service (Keystone's registered and project limits;
-- region_id '' is no region), and one row per project that quota-checked changes lock, so
-- that the checks of concurrent changes to one project's images run one after the other.
CREATE TABLE registered_limits (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    service_id VARCHAR(64) NOT NULL,
    region_id VARCHAR(255) NOT NULL,
    resource_name VARCHAR(255) NOT NULL,
    default_limit BIGINT NOT NULL,
    description TEXT,
    UNIQUE (service_id, region_id, resource_name)
);
CREATE TABLE project_limits (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    project_id VARCHAR(64) NOT NULL,
    service_id VARCHAR(64) NOT NULL,
    region_id VARCHAR(255) NOT NULL,
    resource_name VARCHAR(255) NOT NULL,
    resource_limit BIGINT NOT NULL,
    description TEXT,
    UNIQUE (project_id, service_id, region_id, resource_name)
);
CREATE TABLE quota_locks (
    project VARCHAR(255) NOT NULL PRIMARY KEY,
    n BIGINT NOT NULL
);
-- Counting a project's images for its quota reads this index alone.
CREATE INDEX ix_images_owner_status ON images (owner, deleted, status)
