-- Tenants' API keys (issue 7). The key itself is never stored: only its SHA-256 (looked up by this unique
-- index, then compared in constant time) and its first characters, shown in lists so people can tell keys
-- apart. Revoking sets revoked_at; rows are never deleted, so a list shows who had which key when.
CREATE TABLE api_keys (
    id           bigserial   PRIMARY KEY,
    tenant       text        NOT NULL,
    name         text        NOT NULL DEFAULT '',
    prefix       text        NOT NULL,
    sha256       bytea       NOT NULL UNIQUE CHECK (octet_length(sha256) = 32),
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, created_at);
