-- Rate limits an operator changed at run time (PUT /api/v1/limits/{agent}), kept where they survive Redis: a Redis
-- that lost its data (no persistence, an older snapshot) rebuilt each group from the workers' configuration, and the
-- change, documented to stay in force until deleted, was gone. The coordinators write them back into Redis when
-- Redis is a new server process. Expand only.
CREATE TABLE limit_overrides (
    limit_group text        PRIMARY KEY,
    requests    bigint      NOT NULL,
    window_ms   bigint      NOT NULL,
    tokens      bigint      NOT NULL,
    guard_ms    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
