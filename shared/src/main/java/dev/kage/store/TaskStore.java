package dev.kage.store;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobStatus;
import dev.kage.task.Priority;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import org.jdbi.v3.core.Handle;

/**
 * Tasks, results and errors in Postgres. Rows are appended; a task's status changes only inside a
 * transaction that holds the task's row lock, so workers finishing jobs of one task at the same
 * moment cannot overwrite each other's outcome. Thread-safe.
 */
public final class TaskStore {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final TypeReference<List<Map<String, Object>>> ASSIGNMENTS = new TypeReference<>() {
    };

    private final Database database;

    public TaskStore(Database database) {
        this.database = database;
    }

    public void insert(TaskRecord task) {
        run(handle -> bindTask(handle.createUpdate("""
                        INSERT INTO tasks (id, tenant, description, status, priority, repo, base_branch,
                                           cli_assignments, metadata, token_limit)
                        VALUES (:id, :tenant, :description, :status, :priority, :repo, :baseBranch,
                                CAST(:assignments AS jsonb), CAST(:metadata AS jsonb), :tokenLimit)
                        """), task)
                .execute());
    }

    /**
     * Inserts many tasks in one statement (one array per column, unnested): all or none. A thousand tasks cost about
     * half of a JDBC batch of single-row inserts, which Postgres plans and executes row by row.
     *
     * <p>The rows are inserted already marked enqueued, and the same statement writes the outbox row {@code outbox}
     * naming them ({@code enqueue_outbox}): the caller deletes it once their jobs are in Redis ({@link #deleteOutbox});
     * until then, and if it never does, the reconciler finds it ({@link #releaseStaleOutbox}).
     *
     * @param outbox the id of the outbox row to write
     */
    public void insertAll(List<TaskRecord> tasks, UUID outbox) {
        call(handle -> insertRows(handle, tasks, null, null, outbox));
    }

    /**
     * {@link #insertAll} with an idempotency key per task ({@code keys}, in the order of {@code tasks}; all of one
     * tenant), in one transaction: either no key is taken yet and every task is inserted, or nothing is and the tasks
     * that hold these keys are returned. Concurrent calls with the same keys insert once: the later ones wait on the
     * unique index for the first to commit, then find its tasks.
     *
     * @param requestHash hash of the request, stored with each task to tell a repeat from a different request
     * @return empty when inserted; otherwise the tasks already holding these keys, in the order of {@code keys} (fewer
     * than asked when only some keys are taken: the key was used for another request)
     */
    public Optional<List<Existing>> insertAllIdempotent(List<TaskRecord> tasks, List<String> keys, String requestHash,
                                                        UUID outbox) {
        if (keys.size() != tasks.size() || tasks.isEmpty()) {
            throw new IllegalArgumentException(keys.size() + " keys for " + tasks.size() + " tasks");
        }
        String tenant = tasks.getFirst().tenant();
        if (tasks.stream().anyMatch(t -> !t.tenant().equals(tenant))) {
            throw new IllegalArgumentException("an idempotent batch is one tenant's");
        }
        return call(handle -> handle.inTransaction(tx -> {
            int inserted = insertRows(tx, tasks, keys, requestHash, outbox);
            if (inserted == tasks.size()) {
                return Optional.<List<Existing>>empty();
            }
            if (inserted > 0) {
                // Some keys were free: not a repeat of the request that took the others. None of this batch stays, nor
                // its outbox row.
                tx.rollback();
            }
            Map<String, Existing> byKey = new java.util.HashMap<>();
            tx.createQuery("SELECT * FROM tasks WHERE tenant = :tenant AND idempotency_key = ANY(:keys)")
                    .bind("tenant", tenant)
                    .bindArray("keys", String.class, keys)
                    .map((rs, ctx) -> Map.entry(rs.getString("idempotency_key"), new Existing(taskRow(rs), rs.getString("request_hash"))))
                    .forEach(e -> byKey.put(e.getKey(), e.getValue()));
            return Optional.of(keys.stream().map(byKey::get).filter(java.util.Objects::nonNull).toList());
        }));
    }

    /**
     * The batch insert, marked enqueued, with its outbox row (none when no row is inserted); with {@code keys}, a task
     * whose key its tenant holds already is skipped.
     *
     * @return rows inserted
     */
    private static int insertRows(Handle handle, List<TaskRecord> tasks, List<String> keys, String requestHash, UUID outbox) {
        int n = tasks.size();
        String[] ids = new String[n];
        String[] tenants = new String[n];
        String[] descriptions = new String[n];
        String[] statuses = new String[n];
        String[] priorities = new String[n];
        String[] repos = new String[n];
        String[] baseBranches = new String[n];
        String[] assignments = new String[n];
        String[] metadata = new String[n];
        Long[] tokenLimits = new Long[n];
        Map<List<dev.kage.task.Assignment>, String> assignmentJson = new java.util.HashMap<>();
        for (int i = 0; i < n; i++) {
            TaskRecord task = tasks.get(i);
            ids[i] = task.id().toString();
            tenants[i] = task.tenant();
            descriptions[i] = task.description();
            statuses[i] = task.status().wireName();
            priorities[i] = task.priority().wireName();
            repos[i] = task.repo();
            baseBranches[i] = task.baseBranch();
            // A batch's tasks mostly share their assignments: each distinct list is written as JSON once.
            assignments[i] = assignmentJson.computeIfAbsent(task.assignments(), TaskStore::assignmentsJson);
            metadata[i] = task.metadataJson();
            tokenLimits[i] = task.tokenLimit();
        }
        boolean keyed = keys != null;
        var insert = handle.createQuery("""
                        WITH inserted AS (
                        INSERT INTO tasks (id, tenant, description, status, priority, repo, base_branch,
                                           cli_assignments, metadata, token_limit, enqueued_at%s)
                        SELECT id, tenant, description, status, priority, repo, base_branch,
                               CAST(assignments AS jsonb), CAST(metadata AS jsonb), token_limit, now()%s
                        FROM unnest(CAST(:ids AS uuid[]), CAST(:tenants AS text[]), CAST(:descriptions AS text[]),
                                    CAST(:statuses AS text[]), CAST(:priorities AS text[]), CAST(:repos AS text[]),
                                    CAST(:baseBranches AS text[]), CAST(:assignments AS text[]), CAST(:metadata AS text[]),
                                    CAST(:tokenLimits AS bigint[])%s)
                             AS u(id, tenant, description, status, priority, repo, base_branch, assignments, metadata,
                                  token_limit%s)
                        %s
                        RETURNING id)
                        INSERT INTO enqueue_outbox (id, task_ids)
                        SELECT :outbox, array_agg(id) FROM inserted HAVING count(*) > 0
                        RETURNING cardinality(task_ids)
                        """.formatted(keyed ? ", idempotency_key, request_hash" : "", keyed ? ", key, :hash" : "",
                        keyed ? ", CAST(:keys AS text[])" : "", keyed ? ", key" : "",
                        keyed ? "ON CONFLICT (tenant, idempotency_key) DO NOTHING" : ""))
                // Binary arrays (SqlArrays); the ids go as text, cast in the statement.
                .bind("ids", SqlArrays.of("text", ids))
                .bind("tenants", SqlArrays.of("text", tenants))
                .bind("descriptions", SqlArrays.of("text", descriptions))
                .bind("statuses", SqlArrays.of("text", statuses))
                .bind("priorities", SqlArrays.of("text", priorities))
                .bind("repos", SqlArrays.of("text", repos))
                .bind("baseBranches", SqlArrays.of("text", baseBranches))
                .bind("assignments", SqlArrays.of("text", assignments))
                .bind("metadata", SqlArrays.of("text", metadata))
                .bind("tokenLimits", SqlArrays.of("int8", tokenLimits))
                .bind("outbox", outbox);
        if (keyed) {
            insert.bind("keys", SqlArrays.of("text", keys.toArray(String[]::new))).bind("hash", requestHash);
        }
        return insert.mapTo(Integer.class).findOne().orElse(0);
    }

    /** Deletes outbox rows whose tasks' jobs are all in Redis ({@link #insertAll}). */
    public void deleteOutbox(List<UUID> outboxes) {
        run(handle -> handle.createUpdate("DELETE FROM enqueue_outbox WHERE id = ANY(:ids)")
                .bindArray("ids", UUID.class, outboxes)
                .execute());
    }

    /**
     * Hands back up to {@code rows} outbox rows older than {@code olderThanSeconds}, oldest first: whoever wrote them did
     * not confirm their tasks' jobs in Redis (it died, or Redis refused them). In one transaction, each row is deleted
     * and its tasks that are not ended have {@code enqueued_at} cleared, so that {@link #unenqueued} returns them.
     * Concurrent callers (every coordinator's reconciler) take different rows.
     */
    public Released releaseStaleOutbox(long olderThanSeconds, int rows) {
        return call(handle -> handle.inTransaction(tx -> {
            List<UUID> ids = new java.util.ArrayList<>();
            int[] deleted = {0};
            tx.createQuery("""
                            DELETE FROM enqueue_outbox WHERE id IN (
                                SELECT id FROM enqueue_outbox WHERE created_at < now() - make_interval(secs => :age)
                                ORDER BY created_at LIMIT :rows FOR UPDATE SKIP LOCKED)
                            RETURNING task_ids
                            """)
                    .bind("age", (double) olderThanSeconds)
                    .bind("rows", rows)
                    .map((rs, ctx) -> (UUID[]) rs.getArray(1).getArray())
                    .forEach(taskIds -> {
                        deleted[0]++;
                        ids.addAll(List.of(taskIds));
                    });
            if (ids.isEmpty()) {
                return new Released(deleted[0], 0, 0);
            }
            int reopened = tx.createUpdate("""
                            UPDATE tasks SET enqueued_at = NULL
                            WHERE id = ANY(:ids) AND enqueued_at IS NOT NULL AND status IN ('queued', 'running')
                            """)
                    .bindArray("ids", UUID.class, ids)
                    .execute();
            return new Released(deleted[0], ids.size(), reopened);
        }));
    }

    /**
     * What {@link #releaseStaleOutbox} handed back.
     *
     * @param rows     outbox rows deleted
     * @param named    tasks those rows named
     * @param reopened those of them not ended, whose mark was cleared
     */
    public record Released(int rows, int named, int reopened) {
    }

    /** Notes that every job of these tasks is in Redis, so the reconciler leaves them alone; one statement. */
    public void markAllEnqueued(List<UUID> taskIds) {
        run(handle -> handle.createUpdate("UPDATE tasks SET enqueued_at = now() WHERE id = ANY(:ids) AND enqueued_at IS NULL")
                .bindArray("ids", UUID.class, taskIds)
                .execute());
    }

    private static <S extends org.jdbi.v3.core.statement.SqlStatement<S>> S bindTask(S statement, TaskRecord task) {
        return statement.bind("id", task.id())
                .bind("tenant", task.tenant())
                .bind("description", task.description())
                .bind("status", task.status().wireName())
                .bind("priority", task.priority().wireName())
                .bind("repo", task.repo())
                .bind("baseBranch", task.baseBranch())
                .bind("assignments", assignmentsJson(task.assignments()))
                .bind("metadata", task.metadataJson())
                .bind("tokenLimit", task.tokenLimit());
    }

    /** The tenant of the task, when it exists. */
    public Optional<String> tenantOf(UUID id) {
        return call(handle -> handle.createQuery("SELECT tenant FROM tasks WHERE id = :id").bind("id", id).mapTo(String.class)
                .findOne());
    }

    /** The tenant's task; another tenant's id finds nothing. */
    public Optional<TaskRecord> find(String tenant, UUID id) {
        return call(handle -> handle.createQuery("SELECT * FROM tasks WHERE id = :id AND tenant = :tenant")
                .bind("id", id)
                .bind("tenant", tenant)
                .map((rs, ctx) -> taskRow(rs))
                .findOne());
    }

    public List<ResultRecord> results(UUID taskId) {
        return call(handle -> handle.createQuery("SELECT * FROM execution_results WHERE task_id = :id ORDER BY attempt, id")
                .bind("id", taskId)
                .map((rs, ctx) -> resultRow(rs))
                .list());
    }

    public List<ErrorRecord> errors(UUID taskId) {
        return call(handle -> handle.createQuery("SELECT * FROM task_errors WHERE task_id = :id ORDER BY id")
                .bind("id", taskId)
                .map((rs, ctx) -> errorRow(rs))
                .list());
    }

    /** Sets the status outright, e.g. {@code failed} when a task could not be enqueued. */
    public void setStatus(UUID taskId, TaskStatus status) {
        run(handle -> handle.createUpdate("""
                        UPDATE tasks SET status = :status, updated_at = now(),
                                         completed_at = CASE WHEN :final THEN now() ELSE completed_at END
                        WHERE id = :id
                        """)
                .bind("id", taskId)
                .bind("status", status.wireName())
                .bind("final", status.isFinal())
                .execute());
    }

    /**
     * Records a job attempt's outcome and the task's resulting status in one transaction. A second
     * outcome for the same job attempt is ignored (a job re-delivered after its outcome was written, an
     * outcome flushed twice from the outbox), and so are its errors unless they carry their own keys.
     * The task's status follows the newest attempt of each job; a cancelled task stays cancelled.
     *
     * @return the task's status after this outcome
     * @throws IllegalStateException when the task does not exist
     */
    public TaskStatus recordOutcome(ResultRecord result, List<ErrorRecord> errors) {
        TaskStatus status = recordOutcomes(List.of(new Outcome(result, errors)), List.of()).get(result.taskId());
        if (status == null) {
            throw new IllegalStateException("no task " + result.taskId() + " for the outcome of " + result.jobId());
        }
        return status;
    }

    /**
     * The latest result of each job of the tasks {@code :ids}, as the status that decides the task: a job a dead
     * letter's replay put back ({@code job_replays}) and whose replayed attempt has no row yet is {@code running}, not
     * the failure of its older attempt, which would otherwise end the task (as {@code partial} or {@code failed}) while
     * that attempt still runs, and so refuse its cancel and hide it from the reconciler. Each task's rows are read
     * through {@code execution_results_task_idx} on their own (a {@code LATERAL} subquery that {@code OFFSET 0} keeps
     * from being merged into a join): with {@code task_id = ANY(:ids)}, a table without statistics yet (a new
     * deployment, before autovacuum's first analyze) was read whole for every batch, so a batch's cost grew with the
     * table (10 ms at 60,000 rows against 1 ms).
     */
    static final String LATEST_RESULTS = """
            SELECT DISTINCT ON (r.job_id) r.task_id,
                   CASE WHEN r.attempt < p.attempt THEN 'running' ELSE r.status END AS status
            FROM unnest(CAST(:ids AS uuid[])) AS t(id)
            CROSS JOIN LATERAL (SELECT task_id, job_id, status, attempt FROM execution_results
                                WHERE task_id = t.id OFFSET 0) AS r
            LEFT JOIN job_replays p ON p.job_id = r.job_id
            ORDER BY r.job_id, r.attempt DESC
            """;

    /**
     * The job ids of the tasks {@code :ids} that have a result row for the attempt they are due: any attempt, or for a
     * job a dead letter's replay put back, that attempt or a later one ({@code job_replays}). Read as
     * {@link #LATEST_RESULTS} reads.
     */
    static final String JOBS_WITH_RESULTS = """
            SELECT r.job_id
            FROM unnest(CAST(:ids AS uuid[])) AS t(id)
            CROSS JOIN LATERAL (SELECT job_id, attempt FROM execution_results WHERE task_id = t.id OFFSET 0) AS r
            LEFT JOIN job_replays p ON p.job_id = r.job_id
            GROUP BY r.job_id, p.attempt
            HAVING max(r.attempt) >= coalesce(p.attempt, 1)
            """;

    /**
     * {@link #recordOutcome} for many jobs in one transaction (group commit): one statement per step
     * for the whole batch instead of one transaction per job. Tasks are locked in id order, so two
     * workers writing overlapping batches cannot deadlock.
     *
     * @param started tasks whose jobs started since the last batch: queued ones move to running
     * @return each touched task's status after the batch
     */
    public Map<UUID, TaskStatus> recordOutcomes(List<Outcome> outcomes, java.util.Collection<UUID> started) {
        java.util.SortedSet<UUID> ids = new java.util.TreeSet<>(started);
        outcomes.forEach(o -> ids.add(o.result().taskId()));
        if (ids.isEmpty()) {
            return Map.of();
        }
        return call(handle -> handle.inTransaction(tx -> {
            Map<UUID, Map<String, Object>> tasks = new java.util.HashMap<>();
            tx.createQuery("""
                            SELECT id, status, jsonb_array_length(cli_assignments) AS jobs
                            FROM tasks WHERE id = ANY(:ids) ORDER BY id FOR UPDATE
                            """)
                    .bindArray("ids", UUID.class, ids)
                    .mapToMap()
                    .forEach(row -> tasks.put((UUID) row.get("id"), row));
            List<Outcome> known = outcomes.stream().filter(o -> tasks.containsKey(o.result().taskId())).toList();
            if (!known.isEmpty()) {
                java.util.Set<String> inserted = insertResults(tx, known.stream().map(Outcome::result).toList());
                List<ErrorRecord> errorRows = new ArrayList<>();
                for (Outcome outcome : known) {
                    boolean fresh = inserted.contains(outcome.result().jobId() + "#" + outcome.result().attempt());
                    for (ErrorRecord error : outcome.errors()) {
                        if (fresh || error.errorKey() != null) {
                            errorRows.add(error);
                        }
                    }
                }
                insertErrorRows(tx, errorRows);
            }
            Map<UUID, List<JobStatus>> jobs = new java.util.HashMap<>();
            tx.createQuery(LATEST_RESULTS)
                    .bindArray("ids", UUID.class, tasks.keySet())
                    .mapToMap()
                    .forEach(row -> jobs.computeIfAbsent((UUID) row.get("task_id"), k -> new ArrayList<>())
                            .add(JobStatus.fromWireName(String.valueOf(row.get("status"))).orElse(JobStatus.FAILED)));
            Map<UUID, TaskStatus> after = new java.util.HashMap<>();
            List<UUID> updateIds = new ArrayList<>();
            List<String> updateStatuses = new ArrayList<>();
            List<Boolean> updateFinals = new ArrayList<>();
            java.util.Set<UUID> withOutcomes = new java.util.HashSet<>();
            known.forEach(o -> withOutcomes.add(o.result().taskId()));
            for (var task : tasks.entrySet()) {
                TaskStatus current = TaskStatus.fromWireName(String.valueOf(task.getValue().get("status"))).orElse(TaskStatus.RUNNING);
                if (current == TaskStatus.CANCELLED) {
                    after.put(task.getKey(), current);
                    continue;
                }
                if (!withOutcomes.contains(task.getKey())) {
                    // Only a start: a queued task runs now. Nothing else changes, since the job that started may
                    // be a new attempt whose predecessor's outcome must not decide the task meanwhile.
                    TaskStatus status = current == TaskStatus.QUEUED ? TaskStatus.RUNNING : current;
                    after.put(task.getKey(), status);
                    if (status != current) {
                        updateIds.add(task.getKey());
                        updateStatuses.add(status.wireName());
                        updateFinals.add(false);
                    }
                    continue;
                }
                List<JobStatus> statuses = new ArrayList<>(jobs.getOrDefault(task.getKey(), List.of()));
                int expected = ((Number) task.getValue().get("jobs")).intValue();
                boolean anyStarted = started.contains(task.getKey()) || current != TaskStatus.QUEUED || !statuses.isEmpty();
                while (statuses.size() < expected) {
                    statuses.add(anyStarted ? JobStatus.RUNNING : JobStatus.QUEUED);
                }
                TaskStatus status = TaskStatus.of(statuses);
                after.put(task.getKey(), status);
                if (status != current) {
                    updateIds.add(task.getKey());
                    updateStatuses.add(status.wireName());
                    updateFinals.add(status.isFinal());
                }
            }
            if (!updateIds.isEmpty()) {
                // One statement for the batch: arrays bind in a few parameters where a JDBC batch binds every row.
                tx.createUpdate("""
                                UPDATE tasks SET status = u.status, updated_at = now(),
                                                 completed_at = CASE WHEN u.final THEN now() ELSE NULL END
                                FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:finals AS boolean[]))
                                     AS u(id, status, final)
                                WHERE tasks.id = u.id
                                """)
                        .bindArray("ids", UUID.class, updateIds)
                        .bindArray("statuses", String.class, updateStatuses)
                        .bindArray("finals", Boolean.class, updateFinals)
                        .execute();
            }
            return after;
        }));
    }

    /**
     * One job attempt's outcome, for {@link #recordOutcomes}.
     *
     * @param errors its error rows
     */
    public record Outcome(ResultRecord result, List<ErrorRecord> errors) {
    }

    /**
     * Inserts result rows in one statement (one array per column, unnested), skipping a job attempt that has its row.
     *
     * @return {@code job_id#attempt} of the rows inserted
     */
    private static java.util.Set<String> insertResults(org.jdbi.v3.core.Handle tx, List<ResultRecord> results) {
        int n = results.size();
        String[] taskIds = new String[n];
        String[] jobIds = new String[n];
        String[] cliNames = new String[n];
        String[] statuses = new String[n];
        String[] summaries = new String[n];
        Long[] tokensIn = new Long[n];
        Long[] tokensOut = new Long[n];
        Long[] cacheRead = new Long[n];
        Long[] cacheWrite = new Long[n];
        Long[] totals = new Long[n];
        java.math.BigDecimal[] costs = new java.math.BigDecimal[n];
        String[] sources = new String[n];
        String[] models = new String[n];
        Long[] durations = new Long[n];
        Integer[] exitCodes = new Integer[n];
        String[] branches = new String[n];
        String[] commits = new String[n];
        String[] diffStats = new String[n];
        String[] workers = new String[n];
        Integer[] attempts = new Integer[n];
        String[] patches = new String[n];
        for (int i = 0; i < n; i++) {
            ResultRecord r = results.get(i);
            taskIds[i] = r.taskId().toString();
            jobIds[i] = r.jobId();
            cliNames[i] = r.cliName();
            statuses[i] = r.status().wireName();
            summaries[i] = r.outputSummary();
            tokensIn[i] = r.tokensIn();
            tokensOut[i] = r.tokensOut();
            cacheRead[i] = r.cacheReadTokens();
            cacheWrite[i] = r.cacheWriteTokens();
            totals[i] = r.totalTokens();
            costs[i] = r.cost();
            sources[i] = r.usageSource();
            models[i] = r.model();
            durations[i] = r.durationMs();
            exitCodes[i] = r.exitCode();
            branches[i] = r.branch();
            commits[i] = r.commitSha();
            diffStats[i] = r.diffStat();
            workers[i] = r.workerId();
            attempts[i] = r.attempt();
            patches[i] = r.patch();
        }
        // One statement for the batch: 21 arrays bind in a fraction of what a JDBC batch of n rows of 21 parameters costs;
        // all but the costs as binary arrays (SqlArrays: pgjdbc has no binary numeric[]).
        return tx.createQuery("""
                        INSERT INTO execution_results (task_id, job_id, cli_name, status, output_summary, tokens_in,
                            tokens_out, cache_read_tokens, cache_write_tokens, total_tokens, cost, usage_source, model,
                            duration_ms, exit_code, branch, commit_sha, diff_stat, worker_id, attempt, patch)
                        SELECT * FROM unnest(CAST(:taskIds AS uuid[]), CAST(:jobIds AS text[]), CAST(:cliNames AS text[]),
                            CAST(:statuses AS text[]), CAST(:summaries AS text[]), CAST(:tokensIn AS bigint[]),
                            CAST(:tokensOut AS bigint[]), CAST(:cacheRead AS bigint[]), CAST(:cacheWrite AS bigint[]),
                            CAST(:totals AS bigint[]), CAST(:costs AS numeric[]), CAST(:sources AS text[]),
                            CAST(:models AS text[]), CAST(:durations AS bigint[]), CAST(:exitCodes AS integer[]),
                            CAST(:branches AS text[]), CAST(:commits AS text[]), CAST(:diffStats AS text[]),
                            CAST(:workers AS text[]), CAST(:attempts AS integer[]), CAST(:patches AS text[]))
                        ON CONFLICT (job_id, attempt) DO NOTHING
                        RETURNING job_id || '#' || attempt
                        """)
                .bind("taskIds", SqlArrays.of("text", taskIds))
                .bind("jobIds", SqlArrays.of("text", jobIds))
                .bind("cliNames", SqlArrays.of("text", cliNames))
                .bind("statuses", SqlArrays.of("text", statuses))
                .bind("summaries", SqlArrays.of("text", summaries))
                .bind("tokensIn", SqlArrays.of("int8", tokensIn))
                .bind("tokensOut", SqlArrays.of("int8", tokensOut))
                .bind("cacheRead", SqlArrays.of("int8", cacheRead))
                .bind("cacheWrite", SqlArrays.of("int8", cacheWrite))
                .bind("totals", SqlArrays.of("int8", totals))
                .bindArray("costs", java.math.BigDecimal.class, (Object[]) costs)
                .bind("sources", SqlArrays.of("text", sources))
                .bind("models", SqlArrays.of("text", models))
                .bind("durations", SqlArrays.of("int8", durations))
                .bind("exitCodes", SqlArrays.of("int4", exitCodes))
                .bind("branches", SqlArrays.of("text", branches))
                .bind("commits", SqlArrays.of("text", commits))
                .bind("diffStats", SqlArrays.of("text", diffStats))
                .bind("workers", SqlArrays.of("text", workers))
                .bind("attempts", SqlArrays.of("int4", attempts))
                .bind("patches", SqlArrays.of("text", patches))
                .mapTo(String.class)
                .collect(java.util.stream.Collectors.toSet());
    }

    /** Inserts error rows in one statement; a row whose {@code error_key} exists is skipped. */
    private static void insertErrorRows(org.jdbi.v3.core.Handle tx, List<ErrorRecord> errors) {
        if (errors.isEmpty()) {
            return;
        }
        tx.createUpdate("""
                        INSERT INTO task_errors (task_id, job_id, cli_name, error_type, error_message, error_details, retryable,
                                                 error_key)
                        SELECT t, j, c, e, m, CAST(d AS jsonb), r, k
                        FROM unnest(CAST(:taskIds AS uuid[]), CAST(:jobIds AS text[]), CAST(:cliNames AS text[]),
                                    CAST(:types AS text[]), CAST(:messages AS text[]), CAST(:details AS text[]),
                                    CAST(:retryables AS boolean[]), CAST(:keys AS text[])) AS u(t, j, c, e, m, d, r, k)
                        ON CONFLICT (error_key) DO NOTHING
                        """)
                .bindArray("taskIds", UUID.class, errors.stream().map(ErrorRecord::taskId).toList())
                .bindArray("jobIds", String.class, errors.stream().map(ErrorRecord::jobId).toList())
                .bindArray("cliNames", String.class, errors.stream().map(ErrorRecord::cliName).toList())
                .bindArray("types", String.class, errors.stream().map(ErrorRecord::errorType).toList())
                .bindArray("messages", String.class, errors.stream().map(ErrorRecord::errorMessage).toList())
                .bindArray("details", String.class, errors.stream().map(e -> e.detailsJson() == null ? "{}" : e.detailsJson()).toList())
                .bindArray("retryables", Boolean.class, errors.stream().map(ErrorRecord::retryable).toList())
                .bindArray("keys", String.class, errors.stream().map(ErrorRecord::errorKey).toList())
                .execute();
    }

    /** True when this job attempt already has an outcome row. */
    public boolean hasOutcome(String jobId, int attempt) {
        return call(handle -> handle.createQuery("SELECT count(*) FROM execution_results WHERE job_id = :job AND attempt = :attempt")
                .bind("job", jobId)
                .bind("attempt", attempt)
                .mapTo(Long.class)
                .one() > 0);
    }

    /** Whether an error row with this {@code error_key} exists. */
    public boolean hasError(String errorKey) {
        return call(handle -> handle.createQuery("SELECT count(*) FROM task_errors WHERE error_key = :key")
                .bind("key", errorKey)
                .mapTo(Long.class)
                .one() > 0);
    }

    /** Appends error rows (idempotently for rows with a key), e.g. a failed attempt that will be retried. */
    public void insertErrors(List<ErrorRecord> errors) {
        run(handle -> handle.useTransaction(tx -> errors.forEach(e -> insertError(tx, e))));
    }

    /**
     * Inserts the task unless the tenant already has one with this idempotency key.
     *
     * @return empty when inserted; otherwise the existing task and the request hash it was created with
     */
    public Optional<Existing> insertIdempotent(TaskRecord task, String idempotencyKey, String requestHash) {
        return call(handle -> handle.inTransaction(tx -> {
            int inserted = bindTask(tx.createUpdate("""
                            INSERT INTO tasks (id, tenant, description, status, priority, repo, base_branch,
                                               cli_assignments, metadata, token_limit, idempotency_key, request_hash)
                            VALUES (:id, :tenant, :description, :status, :priority, :repo, :baseBranch,
                                    CAST(:assignments AS jsonb), CAST(:metadata AS jsonb), :tokenLimit, :key, :hash)
                            ON CONFLICT (tenant, idempotency_key) DO NOTHING
                            """), task)
                    .bind("key", idempotencyKey)
                    .bind("hash", requestHash)
                    .execute();
            if (inserted == 1) {
                return Optional.<Existing>empty();
            }
            return Optional.of(tx.createQuery("SELECT * FROM tasks WHERE tenant = :tenant AND idempotency_key = :key")
                    .bind("tenant", task.tenant())
                    .bind("key", idempotencyKey)
                    .map((rs, ctx) -> new Existing(taskRow(rs), rs.getString("request_hash")))
                    .one());
        }));
    }

    /**
     * Open tasks whose jobs were not confirmed in Redis and that are older than {@code olderThanSeconds}. Running ones
     * too: a job may start before its task's mark is written (marks are written every 100 ms, and dropped when
     * Postgres refuses them), and an unmarked task is never checked after a Redis restart ({@link #openEnqueued}).
     */
    public List<TaskRecord> unenqueued(long olderThanSeconds, int limit) {
        return unenqueued(olderThanSeconds, null, limit);
    }

    /**
     * {@link #unenqueued(long, int)}, the page after {@code after} (null: the first) in (created_at, id) order, so that a
     * pass goes on past tasks it could not enqueue.
     */
    public List<TaskRecord> unenqueued(long olderThanSeconds, TaskRecord after, int limit) {
        return call(handle -> handle.createQuery("""
                        SELECT * FROM tasks
                        WHERE enqueued_at IS NULL AND status IN ('queued', 'running')
                          AND created_at < now() - make_interval(secs => :age)
                          AND (created_at, id) > (:afterCreated, :afterId)
                        ORDER BY created_at, id LIMIT :limit
                        """)
                .bind("age", (double) olderThanSeconds)
                .bind("afterCreated", after == null ? java.time.Instant.EPOCH : after.createdAt())
                .bind("afterId", after == null ? new UUID(0, 0) : after.id())
                .bind("limit", limit)
                .map((rs, ctx) -> taskRow(rs))
                .list());
    }

    /**
     * Tasks not yet ended whose jobs were confirmed in Redis, a page in (tenant, created_at, id) order after
     * {@code after} (null: from the start), for checking after Redis restarted that their jobs are still there. Reads
     * the open tasks' index ({@code tasks_open_tenant_created_id_idx}) alone, however many tasks have ended.
     */
    public List<TaskRecord> openEnqueued(TaskRecord after, int limit) {
        return openPage("", after, limit, query -> { });
    }

    /**
     * Tasks not ended, confirmed in Redis, created before {@code before}: those whose jobs may wait long for a worker.
     * A page in (tenant, created_at, id) order after {@code after} (null: from the start).
     */
    public List<TaskRecord> openCreatedBefore(java.time.Instant before, TaskRecord after, int limit) {
        return openPage("  AND created_at < :before\n", after, limit, query -> query.bind("before", before));
    }

    /** Open confirmed tasks after {@code after} in the open tasks' index order, with {@code condition} (binding its own). */
    private List<TaskRecord> openPage(String condition, TaskRecord after, int limit,
                                      java.util.function.Consumer<org.jdbi.v3.core.statement.Query> bindCondition) {
        String sql = "SELECT * FROM tasks\nWHERE enqueued_at IS NOT NULL AND status IN ('queued', 'running')\n" + condition
                + (after == null ? "" : "  AND (tenant, created_at, id) > (:afterTenant, :afterCreated, :afterId)\n")
                + "ORDER BY tenant, created_at, id LIMIT :limit";
        return call(handle -> {
            var query = handle.createQuery(sql).bind("limit", limit);
            bindCondition.accept(query);
            if (after != null) {
                query.bind("afterTenant", after.tenant()).bind("afterCreated", after.createdAt()).bind("afterId", after.id());
            }
            return query.map((rs, ctx) -> taskRow(rs)).list();
        });
    }

    /**
     * The job ids among {@code taskIds}' jobs that have an outcome: a result row of any attempt, or for a replayed job
     * ({@link #replayedAttempts}) of the replayed attempt or a later one.
     */
    public java.util.Set<String> jobsWithOutcome(List<UUID> taskIds) {
        if (taskIds.isEmpty()) {
            return java.util.Set.of();
        }
        return call(handle -> handle.createQuery(JOBS_WITH_RESULTS)
                .bindArray("ids", UUID.class, taskIds.toArray(UUID[]::new))
                .mapTo(String.class)
                .collect(java.util.stream.Collectors.toSet()));
    }

    /**
     * Cancels the tenant's task unless it already ended.
     *
     * @return the task's status before the call, or empty when the tenant has no such task
     */
    public Optional<TaskStatus> cancel(String tenant, UUID taskId) {
        return call(handle -> handle.inTransaction(tx -> {
            Optional<TaskStatus> before = tx.createQuery("SELECT status FROM tasks WHERE id = :id AND tenant = :tenant FOR UPDATE")
                    .bind("id", taskId)
                    .bind("tenant", tenant)
                    .mapTo(String.class)
                    .findOne()
                    .flatMap(TaskStatus::fromWireName);
            if (before.isPresent() && !before.get().isFinal()) {
                tx.createUpdate("""
                                UPDATE tasks SET status = 'cancelled', cancel_requested_at = now(), updated_at = now(),
                                                 completed_at = now()
                                WHERE id = :id
                                """)
                        .bind("id", taskId)
                        .execute();
                // Until Redis has it ({@link #cancelPassedOn}): a coordinator that dies first leaves it to the reconciler.
                tx.createUpdate("INSERT INTO pending_cancels (task_id, tenant) VALUES (:id, :tenant) ON CONFLICT DO NOTHING")
                        .bind("id", taskId)
                        .bind("tenant", tenant)
                        .execute();
            }
            return before;
        }));
    }

    /**
     * The tasks cancelled within {@code within}, newest cancel first, at most {@code limit}, as (tenant, task id): what
     * a Redis that restarted from older data may have lost the cancels of. Read rarely (a Redis or coordinator restart),
     * so without an index of its own.
     */
    public List<Map.Entry<String, UUID>> cancelledWithin(java.time.Duration within, int limit) {
        return call(handle -> handle.createQuery("""
                        SELECT tenant, id FROM tasks
                        WHERE status = 'cancelled' AND cancel_requested_at > now() - make_interval(secs => :within)
                        ORDER BY cancel_requested_at DESC LIMIT :limit
                        """)
                .bind("within", (double) within.toSeconds())
                .bind("limit", limit)
                .map((rs, ctx) -> Map.entry(rs.getString(1), rs.getObject(2, UUID.class)))
                .list());
    }

    /** The cancel of the task reached Redis: nothing is left to pass on. */
    public void cancelPassedOn(UUID taskId) {
        run(handle -> handle.createUpdate("DELETE FROM pending_cancels WHERE task_id = :id").bind("id", taskId).execute());
    }

    /**
     * Cancels committed at least {@code olderThanSeconds} ago that have not reached Redis yet (their coordinator died,
     * or Redis was away), oldest first: (tenant, task id).
     */
    public List<Map.Entry<String, UUID>> pendingCancels(int olderThanSeconds, int limit) {
        return call(handle -> handle.createQuery("""
                        SELECT tenant, task_id FROM pending_cancels
                        WHERE created_at < now() - make_interval(secs => :older)
                        ORDER BY created_at LIMIT :limit
                        """)
                .bind("older", olderThanSeconds)
                .bind("limit", limit)
                .map((rs, ctx) -> Map.entry(rs.getString(1), rs.getObject(2, UUID.class)))
                .list());
    }

    /**
     * Reopens a task before a dead letter's job is put back as {@code attempt}: a failed or partial task runs again, the
     * replayed attempt is recorded ({@code job_replays}), and the task's {@code enqueued_at} is cleared, so that the
     * reconciler enqueues that attempt should the replay not reach Redis (or Redis lose it) and the task is never left
     * running with nothing to run ({@link #unenqueued}, {@link #jobsWithOutcome}). The caller marks the task enqueued
     * again once the attempt is in Redis.
     *
     * @return false, with nothing changed, when the job already has a result of {@code attempt} or a later one: the
     *         letter is stale (a reconciler ran the attempt of a replay whose Redis write failed), and putting it back
     *         would run that attempt a second time
     */
    public boolean reopen(UUID taskId, String jobId, int attempt) {
        return call(handle -> handle.inTransaction(tx -> {
            // The task row is locked first, as the group commit locks it: the check below sees every result committed
            // before, and none of the attempt can commit while this runs.
            tx.createQuery("SELECT id FROM tasks WHERE id = :id FOR UPDATE").bind("id", taskId).mapTo(UUID.class).findOne();
            boolean ran = tx.createQuery("SELECT EXISTS (SELECT 1 FROM execution_results WHERE job_id = :job AND attempt >= :attempt)")
                    .bind("job", jobId)
                    .bind("attempt", attempt)
                    .mapTo(Boolean.class)
                    .one();
            if (ran) {
                return false;
            }
            tx.createUpdate("""
                            INSERT INTO job_replays (job_id, task_id, attempt, enqueued) VALUES (:job, :task, :attempt, false)
                            ON CONFLICT (job_id) DO UPDATE SET attempt = GREATEST(job_replays.attempt, EXCLUDED.attempt),
                                                               enqueued = false, replayed_at = now()
                            """)
                    .bind("job", jobId)
                    .bind("task", taskId)
                    .bind("attempt", attempt)
                    .execute();
            tx.createUpdate("""
                            UPDATE tasks SET status = CASE WHEN status IN ('failed', 'partial') THEN 'running' ELSE status END,
                                             completed_at = CASE WHEN status IN ('failed', 'partial') THEN NULL
                                                                 ELSE completed_at END,
                                             enqueued_at = NULL, updated_at = now()
                            WHERE id = :id AND status IN ('failed', 'partial', 'queued', 'running')
                            """)
                    .bind("id", taskId)
                    .execute();
            return true;
        }));
    }

    /**
     * Marks enqueued the tasks whose jobs were found in Redis (or done), after confirming the replayed attempts found
     * there ({@code verified}: job id to attempt, as {@link #replayedAttempts} gave them before Redis was asked), in one
     * transaction. The tasks' rows are locked first, as {@link #reopen} locks them, so a replay that reopened a task
     * meanwhile, its attempt not confirmed yet (its Redis step may still fail), keeps the task unmarked: the reconciler
     * goes on looking at it. A replayed attempt is confirmed only as the attempt asked for: a later replay's is not.
     */
    public void markVerified(List<UUID> taskIds, Map<String, Integer> verified) {
        if (taskIds.isEmpty()) {
            return;
        }
        UUID[] ids = taskIds.stream().sorted().distinct().toArray(UUID[]::new);
        run(handle -> handle.useTransaction(tx -> {
            tx.createQuery("SELECT id FROM tasks WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")
                    .bindArray("ids", UUID.class, ids)
                    .mapTo(UUID.class)
                    .list();
            if (!verified.isEmpty()) {
                List<String> jobs = List.copyOf(verified.keySet());
                tx.createUpdate("""
                                UPDATE job_replays r SET enqueued = true
                                FROM unnest(CAST(:jobs AS text[]), CAST(:attempts AS integer[])) AS v(job_id, attempt)
                                WHERE r.job_id = v.job_id AND r.attempt = v.attempt
                                """)
                        .bindArray("jobs", String.class, jobs)
                        .bindArray("attempts", Integer.class, jobs.stream().map(verified::get).toList())
                        .execute();
            }
            tx.createUpdate("""
                            UPDATE tasks SET enqueued_at = now()
                            WHERE id = ANY(:ids) AND enqueued_at IS NULL
                              AND NOT EXISTS (SELECT 1 FROM job_replays r WHERE r.task_id = tasks.id AND NOT r.enqueued)
                            """)
                    .bindArray("ids", UUID.class, ids)
                    .execute();
        }));
    }

    /** The attempt each replayed job among {@code taskIds}' jobs was put back as (the latest replay's). */
    public Map<String, Integer> replayedAttempts(List<UUID> taskIds) {
        if (taskIds.isEmpty()) {
            return Map.of();
        }
        return call(handle -> handle.createQuery("SELECT job_id, attempt FROM job_replays WHERE task_id = ANY(:ids)")
                .bindArray("ids", UUID.class, taskIds.toArray(UUID[]::new))
                .map((rs, ctx) -> Map.entry(rs.getString(1), rs.getInt(2)))
                .collect(java.util.stream.Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue)));
    }

    /**
     * A task found by its idempotency key.
     *
     * @param requestHash hash of the request that created it
     */
    public record Existing(TaskRecord task, String requestHash) {
    }

    private static int insertError(Handle handle, ErrorRecord error) {
        return handle.createUpdate("""
                        INSERT INTO task_errors (task_id, job_id, cli_name, error_type, error_message, error_details, retryable,
                                                 error_key)
                        VALUES (:taskId, :jobId, :cliName, :errorType, :errorMessage, CAST(:detailsJson AS jsonb), :retryable,
                                :errorKey)
                        ON CONFLICT (error_key) DO NOTHING
                        """)
                .bindMethods(error)
                .bind("detailsJson", error.detailsJson() == null ? "{}" : error.detailsJson())
                .execute();
    }

    private static TaskRecord taskRow(ResultSet rs) throws SQLException {
        List<Assignment> assignments = parseAssignments(rs.getString("cli_assignments")).stream()
                .map(a -> new Assignment(String.valueOf(a.get("cli_name")), ((Number) a.get("timeout")).intValue()))
                .toList();
        return new TaskRecord(
                rs.getObject("id", UUID.class),
                rs.getString("tenant"),
                rs.getString("description"),
                TaskStatus.fromWireName(rs.getString("status")).orElseThrow(),
                Priority.fromWireName(rs.getString("priority")).orElseThrow(),
                rs.getString("repo"),
                rs.getString("base_branch"),
                assignments,
                rs.getString("metadata"),
                rs.getLong("token_limit"),
                instant(rs, "created_at"),
                instant(rs, "updated_at"),
                instant(rs, "completed_at"));
    }

    private static ResultRecord resultRow(ResultSet rs) throws SQLException {
        Object exit = rs.getObject("exit_code");
        return new ResultRecord(
                rs.getObject("task_id", UUID.class),
                rs.getString("job_id"),
                rs.getString("cli_name"),
                JobStatus.fromWireName(rs.getString("status")).orElse(JobStatus.FAILED),
                rs.getString("output_summary"),
                rs.getLong("tokens_in"),
                rs.getLong("tokens_out"),
                rs.getLong("cache_read_tokens"),
                rs.getLong("cache_write_tokens"),
                rs.getBigDecimal("cost"),
                rs.getString("usage_source"),
                rs.getString("model"),
                rs.getLong("duration_ms"),
                exit == null ? null : ((Number) exit).intValue(),
                rs.getString("branch"),
                rs.getString("commit_sha"),
                rs.getString("diff_stat"),
                rs.getString("worker_id"),
                rs.getInt("attempt"),
                instant(rs, "created_at"),
                rs.getString("patch"));
    }

    private static ErrorRecord errorRow(ResultSet rs) throws SQLException {
        return new ErrorRecord(
                rs.getObject("task_id", UUID.class),
                rs.getString("job_id"),
                rs.getString("cli_name"),
                rs.getString("error_type"),
                rs.getString("error_message"),
                rs.getString("error_details"),
                rs.getBoolean("retryable"),
                instant(rs, "occurred_at"),
                rs.getString("error_key"));
    }

    private static Instant instant(ResultSet rs, String column) throws SQLException {
        Timestamp ts = rs.getTimestamp(column);
        return ts == null ? null : ts.toInstant();
    }

    static String assignmentsJson(List<Assignment> assignments) {
        List<Map<String, Object>> wire = assignments.stream()
                .map(a -> Map.<String, Object>of("cli_name", a.cliName(), "timeout", a.timeoutSeconds()))
                .toList();
        try {
            return JSON.writeValueAsString(wire);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static List<Map<String, Object>> parseAssignments(String json) {
        try {
            return JSON.readValue(json, ASSIGNMENTS);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cli_assignments column is not a JSON array: " + e.getOriginalMessage(), e);
        }
    }

    private void run(java.util.function.Consumer<Handle> work) {
        call(handle -> {
            work.accept(handle);
            return null;
        });
    }

    private <T> T call(org.jdbi.v3.core.HandleCallback<T, RuntimeException> work) {
        return database.call(work);
    }
}
