-- The reconciler's scans of open tasks, kept to open tasks however many have ended.
--
-- openEnqueued and openCreatedBefore (each coordinator's start, every Redis restart, hourly) page through open tasks in
-- id order. tasks_status_idx (on status) gave them the open tasks in no order: each page read and sorted all of them,
-- a full pass open² / 500 rows. tasks_open_idx gives them in id order.
CREATE INDEX tasks_open_idx ON tasks (id) WHERE status IN ('queued', 'running');
DROP INDEX tasks_status_idx;

-- unenqueued (every 5 s on every coordinator) pages through unconfirmed open tasks. tasks_unenqueued_idx held every
-- task never marked enqueued, and a task that ends before its mark (a mark flush Postgres refused, a coordinator that
-- died, a cancel while Redis was down) stayed in it for good: each pass's first page read all of them again.
CREATE INDEX tasks_unenqueued_open_idx ON tasks (created_at, id) WHERE enqueued_at IS NULL AND status IN ('queued', 'running');
DROP INDEX tasks_unenqueued_idx;
