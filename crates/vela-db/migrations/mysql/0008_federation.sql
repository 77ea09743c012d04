-- Federation of the embedded identity service with OpenID Connect providers (Keystone's
-- OS-FEDERATION): mappings (Keystone's rule format, JSON), identity providers (the issuer and
-- audience their access tokens must carry, where their keys are, the mapping of their
-- "openid" protocol, and the client used for browser sign-on), and the users federated logins
-- made (idp_id set; they have no password).
CREATE TABLE IF NOT EXISTS identity_mappings (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    rules TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_idps (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    issuer VARCHAR(1024) NOT NULL,
    audience VARCHAR(1024) NOT NULL,
    jwks_uri VARCHAR(1024),
    mapping_id VARCHAR(64) NOT NULL,
    client_id VARCHAR(255),
    client_secret VARCHAR(1024),
    enabled SMALLINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);
ALTER TABLE identity_users ADD COLUMN IF NOT EXISTS idp_id VARCHAR(64)
