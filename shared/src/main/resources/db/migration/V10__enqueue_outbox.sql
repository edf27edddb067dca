-- A batch submit's tasks are inserted already marked enqueued, and one row here names them, in the same statement;
-- the coordinator deletes the row once their jobs are in Redis. A row older than a few seconds (its coordinator died,
-- or Redis refused the jobs) is handed back by the reconciler: the open tasks it names get enqueued_at cleared, so the
-- reconciler looks for their jobs as for any unconfirmed task. One row per batch replaces an UPDATE per task, which
-- cost Postgres more than the task's insert (not HOT: tasks_unenqueued_idx's predicate reads enqueued_at).
CREATE TABLE enqueue_outbox (
    id         uuid        PRIMARY KEY,
    task_ids   uuid[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enqueue_outbox_created_idx ON enqueue_outbox (created_at);
