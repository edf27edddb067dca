-- Queue semantics: a job can have one outcome per attempt (a replayed dead letter runs as a new
-- attempt), error rows can be written idempotently (an outcome spooled during a Postgres outage is
-- flushed at least once), submits can be idempotent per tenant, and a task whose jobs were never
-- written to Redis is found by the reconciler.

ALTER TABLE execution_results DROP CONSTRAINT execution_results_job_id_key;
ALTER TABLE execution_results ADD CONSTRAINT execution_results_job_attempt_key UNIQUE (job_id, attempt);

ALTER TABLE task_errors ADD COLUMN error_key text;
CREATE UNIQUE INDEX task_errors_error_key_idx ON task_errors (error_key);

ALTER TABLE tasks ADD COLUMN idempotency_key text;
ALTER TABLE tasks ADD COLUMN request_hash text;
ALTER TABLE tasks ADD COLUMN enqueued_at timestamptz;
ALTER TABLE tasks ADD COLUMN cancel_requested_at timestamptz;
UPDATE tasks SET enqueued_at = created_at;
CREATE UNIQUE INDEX tasks_tenant_idempotency_idx ON tasks (tenant, idempotency_key);
CREATE INDEX tasks_unenqueued_idx ON tasks (created_at) WHERE enqueued_at IS NULL;
