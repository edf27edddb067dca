-- Kage Bunshin's durable record. Flyway runs this in the configured schema (development_docs by
-- default), so table names are unqualified. The seed's SQL queries run unchanged against it.

CREATE TABLE tasks (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    description     text        NOT NULL,
    status          text        NOT NULL,
    priority        text        NOT NULL DEFAULT 'normal',
    repo            text,
    base_branch     text        NOT NULL,
    cli_assignments jsonb       NOT NULL,
    metadata        jsonb,
    token_limit     bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX tasks_tenant_created_idx ON tasks (tenant, created_at DESC);
CREATE INDEX tasks_status_idx ON tasks (status) WHERE status IN ('queued', 'running');

CREATE TABLE execution_results (
    id                 bigserial   PRIMARY KEY,
    task_id            uuid        NOT NULL REFERENCES tasks (id),
    job_id             text        NOT NULL UNIQUE,
    cli_name           text        NOT NULL,
    status             text        NOT NULL,
    output_summary     text,
    tokens_in          bigint      NOT NULL DEFAULT 0,
    tokens_out         bigint      NOT NULL DEFAULT 0,
    cache_read_tokens  bigint      NOT NULL DEFAULT 0,
    cache_write_tokens bigint      NOT NULL DEFAULT 0,
    total_tokens       bigint      NOT NULL DEFAULT 0,
    cost               numeric(14, 6) NOT NULL DEFAULT 0,
    usage_source       text        NOT NULL,
    model              text,
    duration_ms        bigint      NOT NULL DEFAULT 0,
    exit_code          integer,
    branch             text,
    commit_sha         text,
    diff_stat          text,
    worker_id          text,
    attempt            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_results_task_idx ON execution_results (task_id);
CREATE INDEX execution_results_created_idx ON execution_results (created_at, cli_name);

CREATE TABLE task_errors (
    id            bigserial   PRIMARY KEY,
    task_id       uuid        REFERENCES tasks (id),
    job_id        text,
    cli_name      text,
    error_type    text        NOT NULL,
    error_message text        NOT NULL,
    error_details jsonb       NOT NULL DEFAULT '{}'::jsonb,
    retryable     boolean     NOT NULL DEFAULT false,
    occurred_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_errors_task_idx ON task_errors (task_id);
CREATE INDEX task_errors_type_time_idx ON task_errors (error_type, occurred_at);
