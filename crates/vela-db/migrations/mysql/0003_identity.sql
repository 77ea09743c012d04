-- The embedded identity service: one domain ("default"), its projects, users, roles and role
-- assignments; revoked tokens until they expire; the token signing key shared by all nodes.
CREATE TABLE IF NOT EXISTS identity_projects (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(64) NOT NULL UNIQUE,
    enabled SMALLINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS identity_users (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    enabled SMALLINT NOT NULL DEFAULT 1,
    default_project_id VARCHAR(64),
    tokens_valid_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS identity_roles (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- target is a project id, or 'system' for a system-scope role.
CREATE TABLE IF NOT EXISTS identity_assignments (
    user_id VARCHAR(64) NOT NULL,
    target VARCHAR(64) NOT NULL,
    role_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (user_id, target, role_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS identity_revoked_tokens (
    token_id VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS identity_keys (
    id VARCHAR(32) NOT NULL PRIMARY KEY,
    secret VARCHAR(128) NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
