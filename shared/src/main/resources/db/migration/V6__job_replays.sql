-- The attempt a dead letter's replay put back on its stream, per job (issue 3). A result row of an earlier attempt
-- (the one that went to the dead letters) would otherwise make the reconciler count the job as done, and a replayed
-- attempt that Redis lost (a restart without persistence, or the last second of an AOF) would never run: its task,
-- reopened by the replay, would stay running for ever. Expand only: nothing earlier reads or writes it.
CREATE TABLE job_replays (
    job_id      text        PRIMARY KEY,
    task_id     uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL CHECK (attempt > 1),
    replayed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_replays_task_idx ON job_replays (task_id);
