-- Open tasks by tenant, newest first: one index for the listing of a tenant's open tasks and for the reconciler's scans.
--
-- GET /api/v1/tasks?status=queued,running (a dashboard's or `kage list`'s "what is live") read the tenant's whole
-- (tenant, created_at, id) index, newest first, until it found a page of open tasks: with a few open tasks among
-- millions ended, every ended task's index entry and row, for each such request. The listing now adds the literal
-- predicate when every status it asks for is open, and reads this index instead.
--
-- It replaces tasks_open_idx (id), so a submitted task still costs one partial-index insert: the reconciler's
-- openEnqueued and openCreatedBefore page through open tasks in its order, and the listing reads it backwards. In
-- ascending order: with the columns descending, the planner took the reconciler's keyset condition as a range to read
-- whole and sort, each page.
CREATE INDEX tasks_open_tenant_created_id_idx ON tasks (tenant, created_at, id)
    WHERE status IN ('queued', 'running');
DROP INDEX tasks_open_idx;
