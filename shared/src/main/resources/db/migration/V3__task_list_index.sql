-- GET /api/v1/tasks pages a tenant's tasks by (created_at, id) descending with a keyset cursor.
CREATE INDEX tasks_tenant_created_id_idx ON tasks (tenant, created_at DESC, id DESC);
DROP INDEX tasks_tenant_created_idx;
