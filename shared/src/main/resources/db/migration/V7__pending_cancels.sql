-- Cancels not yet passed on to Redis, where workers learn of them (issue 3). Written in the cancel's own transaction
-- and deleted once Redis has the cancel, so a cancel whose coordinator died, or whose Redis was away, before it told
-- the workers is passed on by any coordinator's reconciler: its queued jobs never start. Expand only.
CREATE TABLE pending_cancels (
    task_id    uuid        PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    tenant     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
