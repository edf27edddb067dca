-- Budget limits an operator set for a tenant at run time (PUT /api/v1/budgets/{tenant}), kept where they survive Redis:
-- a Redis that lost its data fell back to the fleet's defaults (TENANT_MAX_*, 0 = no limit), and a tenant capped at
-- $25 a day ran uncapped. NULL: the field follows the defaults (the Redis hash has no such field). The coordinators
-- write them back into Redis when Redis is a new server process. Expand only.
CREATE TABLE tenant_budget_limits (
    tenant            text        PRIMARY KEY,
    day_tokens        bigint,
    day_usd_micros    bigint,
    month_tokens      bigint,
    month_usd_micros  bigint,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
