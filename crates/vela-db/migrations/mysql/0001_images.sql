-- MySQL/MariaDB: binary collation so text comparisons are exact, as on SQLite and PostgreSQL.
-- Images, their custom properties, tags, data locations and members.
-- Timestamps are microseconds since the Unix epoch (UTC); booleans are 0/1.
CREATE TABLE IF NOT EXISTS images (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255),
    status VARCHAR(30) NOT NULL,
    visibility VARCHAR(20) NOT NULL,
    protected SMALLINT NOT NULL DEFAULT 0,
    os_hidden SMALLINT NOT NULL DEFAULT 0,
    owner VARCHAR(255),
    container_format VARCHAR(32),
    disk_format VARCHAR(32),
    min_disk BIGINT NOT NULL DEFAULT 0,
    min_ram BIGINT NOT NULL DEFAULT 0,
    size BIGINT,
    virtual_size BIGINT,
    checksum VARCHAR(32),
    os_hash_algo VARCHAR(64),
    os_hash_value VARCHAR(128),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    deleted_at BIGINT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX IF NOT EXISTS ix_images_created ON images (created_at, id);
CREATE INDEX IF NOT EXISTS ix_images_updated ON images (updated_at);
CREATE INDEX IF NOT EXISTS ix_images_name ON images (name);
CREATE INDEX IF NOT EXISTS ix_images_owner ON images (owner);
CREATE INDEX IF NOT EXISTS ix_images_checksum ON images (checksum);
CREATE INDEX IF NOT EXISTS ix_images_size ON images (size);

CREATE TABLE IF NOT EXISTS image_properties (
    image_id VARCHAR(36) NOT NULL REFERENCES images (id),
    name VARCHAR(255) NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX IF NOT EXISTS ix_image_properties_name_value ON image_properties (name, value(255));

CREATE TABLE IF NOT EXISTS image_tags (
    image_id VARCHAR(36) NOT NULL REFERENCES images (id),
    value VARCHAR(255) NOT NULL,
    PRIMARY KEY (image_id, value)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX IF NOT EXISTS ix_image_tags_value ON image_tags (value);

CREATE TABLE IF NOT EXISTS image_locations (
    image_id VARCHAR(36) NOT NULL REFERENCES images (id),
    position INTEGER NOT NULL,
    store VARCHAR(255) NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (image_id, position)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS image_members (
    image_id VARCHAR(36) NOT NULL REFERENCES images (id),
    member VARCHAR(255) NOT NULL,
    status VARCHAR(20) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (image_id, member)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX IF NOT EXISTS ix_image_members_member ON image_members (member, status)
