-- Metadata definitions (metadefs): namespaces, the resource types they apply to, and each
-- namespace's objects, properties and tags. A namespace has a surrogate id so that a rename
-- touches one row. Objects, properties and tags share one table (kind 'object', 'property'
-- or 'tag'), and body holds the definition as JSON object text. Timestamps are microseconds since
-- the epoch.
CREATE TABLE metadef_namespaces (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    namespace VARCHAR(80) NOT NULL UNIQUE,
    display_name VARCHAR(80),
    description TEXT,
    visibility VARCHAR(32) NOT NULL,
    protected SMALLINT NOT NULL DEFAULT 0,
    owner VARCHAR(255),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE metadef_resource_types (
    name VARCHAR(80) NOT NULL PRIMARY KEY,
    protected SMALLINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE metadef_associations (
    namespace_id VARCHAR(36) NOT NULL,
    resource_type VARCHAR(80) NOT NULL,
    prefix VARCHAR(80),
    properties_target VARCHAR(80),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, resource_type),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    FOREIGN KEY (resource_type) REFERENCES metadef_resource_types (name)
);
CREATE INDEX ix_metadef_associations_type ON metadef_associations (resource_type);
CREATE TABLE metadef_items (
    namespace_id VARCHAR(36) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    name VARCHAR(80) NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, kind, name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id) ON DELETE CASCADE
);
-- One-time events of a deployment, such as loading the default metadefs on first start.
CREATE TABLE vela_events (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    done_at BIGINT NOT NULL
)
