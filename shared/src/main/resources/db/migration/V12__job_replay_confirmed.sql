-- Whether a dead letter's replayed attempt is known to be in Redis. A replay reopens its task (enqueued_at cleared) and
-- then adds the attempt to Redis; it used to mark the task enqueued again unconditionally, which could hide another
-- replay of the same task that reopened it meanwhile and then failed in Redis: the reconciler never looked at the task
-- again, and that attempt never ran. Now a task is marked only when none of its replayed attempts is unconfirmed.
-- Rows from before are taken as confirmed (their replays marked their tasks as before).
ALTER TABLE job_replays ADD COLUMN enqueued boolean NOT NULL DEFAULT true;
