-- Only tasks submitted with an Idempotency-Key need the uniqueness check. Most have no key, and the full index
-- took an entry for each of them on every insert and on every update that is not HOT (status changes are not:
-- tasks_status_idx names status): one of the four or five index entries each such write makes. The submit's
-- ON CONFLICT names the same predicate, so Postgres infers this index.
DROP INDEX tasks_tenant_idempotency_idx;
CREATE UNIQUE INDEX tasks_tenant_idempotency_idx ON tasks (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
