package dev.kage.store;

import static dev.kage.store.StoreTestData.budgetViolation;
import static dev.kage.store.StoreTestData.result;
import static dev.kage.store.StoreTestData.task;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.task.JobMessage;
import dev.kage.task.JobStatus;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class TaskStoreTest {
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();

    @AfterEach
    void cleanUp() {
        db.close();
    }

    @Test
    void aTenantFindsOnlyItsOwnTasks() {
        TaskRecord task = task("acme", "demo");
        store.insert(task);
        assertThat(store.find("acme", task.id())).get().extracting(TaskRecord::description).isEqualTo("Quick test");
        assertThat(store.find("globex", task.id())).isEmpty();
        assertThat(store.find("acme", task.id()).get().assignments()).singleElement()
                .satisfies(a -> assertThat(a.timeoutSeconds()).isEqualTo(60));
    }

    @Test
    void aBatchInsertKeepsEveryValueAsWrittenIncludingTheOnesAnArrayLiteralCouldMistake() throws Exception {
        // One statement unnests one array per column: an element that looks like NULL, quotes, braces, commas,
        // backslashes or non-ASCII text must come back as written, and a missing repo or metadata as null.
        List<String> descriptions = List.of("NULL", "null", "", " ", "\"quoted\" {braces}, commas", "back\\slash \\\"",
                "line\nbreak\ttab", "ünïcödé — 漢字 🚀", "{\"json\": [1, 2]}", "x".repeat(20_000));
        List<TaskRecord> tasks = new java.util.ArrayList<>();
        for (int i = 0; i < descriptions.size(); i++) {
            tasks.add(new TaskRecord(java.util.UUID.randomUUID(), i % 2 == 0 ? "acme" : "globex", descriptions.get(i),
                    TaskStatus.QUEUED, dev.kage.task.Priority.values()[i % 3], i % 3 == 0 ? null : "/srv/repo-" + i + " {x}",
                    "feature/" + i, List.of(new dev.kage.task.Assignment("demo", 60 + i), new dev.kage.task.Assignment("codex", 30)),
                    i % 2 == 0 ? null : "{\"n\": " + i + ", \"s\": \"a\\\"b\"}", 1_000L + i, java.time.Instant.now(),
                    java.time.Instant.now(), null));
        }
        store.insertAll(tasks, UUID.randomUUID());
        for (TaskRecord written : tasks) {
            TaskRecord read = store.find(written.tenant(), written.id()).orElseThrow();
            assertThat(read.description()).isEqualTo(written.description());
            assertThat(read.repo()).isEqualTo(written.repo());
            assertThat(read.baseBranch()).isEqualTo(written.baseBranch());
            assertThat(read.priority()).isEqualTo(written.priority());
            assertThat(read.status()).isEqualTo(TaskStatus.QUEUED);
            assertThat(read.assignments()).isEqualTo(written.assignments());
            assertThat(read.tokenLimit()).isEqualTo(written.tokenLimit());
            if (written.metadataJson() == null) {
                assertThat(read.metadataJson()).isNull();
            } else {
                assertThat(new com.fasterxml.jackson.databind.ObjectMapper().readTree(read.metadataJson()))
                        .isEqualTo(new com.fasterxml.jackson.databind.ObjectMapper().readTree(written.metadataJson()));
            }
        }
        // All or none: a batch with an id already taken inserts nothing.
        TaskRecord fresh = task("acme", "demo");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> store.insertAll(List.of(fresh, tasks.getFirst()), UUID.randomUUID()))
                .isInstanceOf(RuntimeException.class);
        assertThat(store.find("acme", fresh.id())).isEmpty();
    }

    @Test
    void aBatchIsInsertedMarkedWithAnOutboxRowThatTheReconcilerHandsBackWhenNobodyConfirmsIt() {
        TaskRecord a = task("acme", "demo");
        TaskRecord b = task("acme", "demo", "codex");
        UUID outbox = UUID.randomUUID();
        store.insertAll(List.of(a, b), outbox);
        assertThat(outboxTasks(outbox)).containsExactlyInAnyOrder(a.id(), b.id());
        assertThat(store.unenqueued(-60, 1000)).as("marked at insert: no UPDATE per task").extracting(TaskRecord::id)
                .doesNotContain(a.id(), b.id());

        // All or none, the outbox row included.
        TaskRecord fresh = task("acme", "demo");
        UUID refused = UUID.randomUUID();
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> store.insertAll(List.of(fresh, a), refused))
                .isInstanceOf(RuntimeException.class);
        assertThat(outboxTasks(refused)).isNull();
        // An idempotent repeat inserts nothing, and writes no outbox row either.
        TaskRecord keyed = task("acme", "demo");
        assertThat(store.insertAllIdempotent(List.of(keyed), List.of("k1"), "h", UUID.randomUUID())).isEmpty();
        UUID repeat = UUID.randomUUID();
        assertThat(store.insertAllIdempotent(List.of(task("acme", "demo")), List.of("k1"), "h", repeat)).get()
                .satisfies(found -> assertThat(found).extracting(e -> e.task().id()).containsExactly(keyed.id()));
        assertThat(outboxTasks(repeat)).isNull();
        // Nor does one whose keys are partly free (another request's batch): its rows and its outbox row are rolled back.
        UUID partly = UUID.randomUUID();
        TaskRecord unkeyed = task("acme", "demo");
        assertThat(store.insertAllIdempotent(List.of(task("acme", "demo"), unkeyed), List.of("k1", "k2"), "h2", partly)).get()
                .satisfies(found -> assertThat(found).extracting(e -> e.task().id()).containsExactly(keyed.id()));
        assertThat(outboxTasks(partly)).isNull();
        assertThat(store.find("acme", unkeyed.id())).isEmpty();

        // Young rows stay (their coordinator is still enqueuing); an old one is handed back: its open tasks lose the mark.
        assertThat(store.releaseStaleOutbox(60, 10)).isEqualTo(new TaskStore.Released(0, 0, 0));
        assertThat(outboxTasks(outbox)).isNotNull();
        store.setStatus(b.id(), TaskStatus.CANCELLED);
        db.database().jdbi().useHandle(h -> h.execute("UPDATE enqueue_outbox SET created_at = now() - interval '1 minute' "
                + "WHERE id = ?", outbox));
        assertThat(store.releaseStaleOutbox(30, 10)).as("the cancelled task is left alone").isEqualTo(new TaskStore.Released(1, 2, 1));
        assertThat(outboxTasks(outbox)).isNull();
        assertThat(store.unenqueued(-60, 1000)).extracting(TaskRecord::id).contains(a.id()).doesNotContain(b.id());
        assertThat(store.releaseStaleOutbox(30, 10).rows()).isZero();

        // A confirmed batch's row is simply deleted.
        UUID confirmed = UUID.randomUUID();
        store.insertAll(List.of(task("acme", "demo")), confirmed);
        store.deleteOutbox(List.of(confirmed, UUID.randomUUID()));
        assertThat(outboxTasks(confirmed)).isNull();
    }

    @Test
    void concurrentReleasesOfStaleOutboxRowsTakeEachRowOnce() throws Exception {
        List<UUID> tasks = new java.util.ArrayList<>();
        for (int i = 0; i < 60; i++) {
            TaskRecord t = task("acme", "demo");
            store.insertAll(List.of(t), UUID.randomUUID());
            tasks.add(t.id());
        }
        db.database().jdbi().useHandle(h -> h.execute("UPDATE enqueue_outbox SET created_at = now() - interval '1 minute'"));
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<Integer>> released = new java.util.ArrayList<>();
            for (int i = 0; i < 4; i++) {
                released.add(pool.submit(() -> {
                    start.await();
                    int named = 0;
                    for (TaskStore.Released r; (r = store.releaseStaleOutbox(5, 7)).rows() > 0; ) {
                        named += r.named();
                    }
                    return named;
                }));
            }
            start.countDown();
            int total = 0;
            for (Future<Integer> f : released) {
                total += f.get();
            }
            assertThat(total).as("each row handed back by one caller").isEqualTo(60);
        } finally {
            pool.shutdownNow();
        }
        assertThat(store.unenqueued(-60, 1000)).extracting(TaskRecord::id).containsExactlyInAnyOrderElementsOf(tasks);
    }

    @Test
    void openConfirmedTasksArePagedAcrossTenantsAndSharedCreationTimesWithoutGapsOrRepeats() {
        java.time.Instant base = java.time.Instant.now().minusSeconds(3600).truncatedTo(java.time.temporal.ChronoUnit.MILLIS);
        List<UUID> open = new java.util.ArrayList<>();
        List<UUID> old = new java.util.ArrayList<>();
        for (int i = 0; i < 12; i++) {
            TaskRecord t = task(i % 3 == 0 ? "acme" : i % 3 == 1 ? "globex" : "initech", "demo");
            store.insert(t);
            // Four tasks share each creation time (across tenants and within one): the keyset must order by all three.
            java.sql.Timestamp at = java.sql.Timestamp.from(base.plusSeconds(i / 4 * 1800L));
            db.database().jdbi().useHandle(h -> h.execute("UPDATE tasks SET created_at = ? WHERE id = ?", at, t.id()));
            open.add(t.id());
            if (i < 8) {
                old.add(t.id());
            }
        }
        TaskRecord ended = task("acme", "demo");
        store.insert(ended);
        store.setStatus(ended.id(), TaskStatus.COMPLETED);
        TaskRecord unconfirmed = task("acme", "demo");
        store.insert(unconfirmed);
        store.markAllEnqueued(open);
        store.markAllEnqueued(List.of(ended.id()));

        assertThat(walk(after -> store.openEnqueued(after, 5))).containsExactlyInAnyOrderElementsOf(open).doesNotHaveDuplicates();
        assertThat(walk(after -> store.openCreatedBefore(base.plusSeconds(3000), after, 3)))
                .containsExactlyInAnyOrderElementsOf(old).doesNotHaveDuplicates();
    }

    /** Every page of a keyset scan, the next one asked for after the last task of the one before. */
    private static List<UUID> walk(java.util.function.Function<TaskRecord, List<TaskRecord>> pages) {
        List<UUID> seen = new java.util.ArrayList<>();
        TaskRecord after = null;
        for (int i = 0; i < 100; i++) {
            List<TaskRecord> page = pages.apply(after);
            if (page.isEmpty()) {
                return seen;
            }
            page.forEach(t -> seen.add(t.id()));
            after = page.getLast();
        }
        throw new AssertionError("no end after 100 pages: " + seen.size() + " tasks");
    }

    @Test
    void unconfirmedTasksArePagedInCreationOrderPastTheOnesAPassLeft() {
        java.time.Instant base = java.time.Instant.now().minusSeconds(60).truncatedTo(java.time.temporal.ChronoUnit.MILLIS);
        List<UUID> ids = new java.util.ArrayList<>();
        for (int i = 0; i < 7; i++) {
            TaskRecord t = task("acme", "demo");
            store.insert(t);
            // Two tasks share each creation time: the id breaks the tie, so a page boundary never skips or repeats one.
            db.database().jdbi().useHandle(h -> h.execute("UPDATE tasks SET created_at = ? WHERE id = ?",
                    java.sql.Timestamp.from(base.plusMillis(ids.size() / 2)), t.id()));
            ids.add(t.id());
        }
        List<UUID> seen = new java.util.ArrayList<>();
        TaskRecord after = null;
        while (true) {
            List<TaskRecord> page = store.unenqueued(5, after, 3);
            page.forEach(t -> seen.add(t.id()));
            if (page.size() < 3) {
                break;
            }
            after = page.getLast();
        }
        assertThat(seen).containsExactlyInAnyOrderElementsOf(ids).doesNotHaveDuplicates();
    }

    private UUID[] outboxTasks(UUID outbox) {
        return db.database().jdbi().withHandle(h -> h.createQuery("SELECT task_ids FROM enqueue_outbox WHERE id = :id")
                .bind("id", outbox).map((rs, ctx) -> (UUID[]) rs.getArray(1).getArray()).findOne().orElse(null));
    }

    @Test
    void aBatchReadsItsTasksResultsThroughTheIndexEvenBeforeTheTableHasStatistics() {
        // The fixture's schema is new and never analyzed, as a fresh deployment's tables are. With 20,000 result rows,
        // task_id = ANY(:ids) was planned as a scan of the whole table (see TaskStore.LATEST_RESULTS).
        db.database().jdbi().useHandle(h -> {
            h.execute("""
                    INSERT INTO tasks (id, tenant, description, status, base_branch, cli_assignments, token_limit)
                    SELECT gen_random_uuid(), 'acme', 'old', 'completed', 'main', '[{"cli_name": "demo"}]', 1000
                    FROM generate_series(1, 20000)""");
            h.execute("""
                    INSERT INTO execution_results (task_id, job_id, cli_name, status, usage_source)
                    SELECT id, id || ':demo', 'demo', 'completed', 'agent' FROM tasks""");
        });
        TaskRecord task = task("acme", "demo", "codex");
        store.insert(task);
        store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.01"), List.of());
        List<UUID> ids = new java.util.ArrayList<>(List.of(task.id()));
        for (int i = 0; i < 199; i++) {
            ids.add(UUID.randomUUID());
        }
        for (String sql : List.of(TaskStore.LATEST_RESULTS, TaskStore.JOBS_WITH_RESULTS)) {
            List<String> lines = db.database().jdbi().withHandle(h -> h.createQuery("EXPLAIN " + sql)
                    .bindArray("ids", UUID.class, ids).mapTo(String.class).list());
            String plan = String.join("\n", lines);
            assertThat(plan).as(sql).doesNotContain("Seq Scan on execution_results").contains("execution_results_task_idx");
        }
        assertThat(store.jobsWithOutcome(ids)).containsExactly(dev.kage.task.JobMessage.jobId(task.id().toString(), "demo"));
    }

    @Test
    void aReplayReopensItsTaskUnlessTheReplayedAttemptEndedItAlready() {
        TaskRecord task = task("acme", "demo");
        store.insert(task);
        String job = dev.kage.task.JobMessage.jobId(task.id().toString(), "demo");
        assertThat(store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.01"), List.of())).isEqualTo(TaskStatus.FAILED);
        store.markAllEnqueued(List.of(task.id()));
        assertThat(store.reopen(task.id(), job, 2)).isTrue();
        assertThat(store.find("acme", task.id()).orElseThrow().status()).isEqualTo(TaskStatus.RUNNING);
        assertThat(store.unenqueued(-60, 1000)).as("left for the reconciler until the replay marks it enqueued")
                .extracting(TaskRecord::id).contains(task.id());
        assertThat(store.replayedAttempts(List.of(task.id()))).containsExactly(java.util.Map.entry(job, 2));
        assertThat(store.jobsWithOutcome(List.of(task.id()))).as("attempt 2 has no row yet").isEmpty();

        // A stale letter's replay: the attempt ran already (the reconciler enqueued it after the replay failed in Redis).
        // The row of that attempt decided the task; reopened, it would stay running with nothing left to run.
        dev.kage.task.ResultRecord second = result(task, "demo", JobStatus.FAILED, "0.01");
        second = new dev.kage.task.ResultRecord(second.taskId(), second.jobId(), second.cliName(), second.status(), second.outputSummary(),
                0, 0, 0, 0, second.cost(), second.usageSource(), second.model(), 1, 1, null, null, null, "w1", 2, null, null);
        assertThat(store.recordOutcome(second, List.of())).isEqualTo(TaskStatus.FAILED);
        assertThat(store.reopen(task.id(), job, 2)).as("stale").isFalse();
        assertThat(store.find("acme", task.id()).orElseThrow().status()).isEqualTo(TaskStatus.FAILED);
        assertThat(store.jobsWithOutcome(List.of(task.id()))).containsExactly(job);
    }

    @Test
    void theReconcilersScansOfOpenTasksReadOnlyOpenTasksInOrderHoweverManyHaveEnded() {
        // 20,000 ended tasks, 2,000 of them never marked enqueued (their marks were lost; they ended anyway), beside
        // 20,000 open confirmed tasks (a backlog) and 5 open unconfirmed ones. Analyzed, as autovacuum would.
        db.database().jdbi().useHandle(h -> {
            h.execute("""
                    INSERT INTO tasks (id, tenant, description, status, base_branch, cli_assignments, token_limit, enqueued_at)
                    SELECT gen_random_uuid(), 'acme', 'old', 'completed', 'main', '[{"cli_name": "demo", "timeout": 60}]', 1000,
                           CASE WHEN n % 10 = 0 THEN NULL ELSE now() END
                    FROM generate_series(1, 20000) AS n""");
            h.execute("""
                    INSERT INTO tasks (id, tenant, description, status, base_branch, cli_assignments, token_limit, enqueued_at)
                    SELECT gen_random_uuid(), 'acme', 'open', 'queued', 'main', '[{"cli_name": "demo", "timeout": 60}]', 1000, now()
                    FROM generate_series(1, 20000)""");
            h.execute("ANALYZE tasks");
        });
        List<TaskRecord> unconfirmed = new java.util.ArrayList<>();
        for (int i = 0; i < 5; i++) {
            TaskRecord task = task("acme", "demo");
            store.insert(task);
            unconfirmed.add(task);
        }
        assertThat(store.unenqueued(-60, 1000)).extracting(TaskRecord::id)
                .containsExactlyInAnyOrderElementsOf(unconfirmed.stream().map(TaskRecord::id).toList());
        assertThat(store.openEnqueued(null, 500)).hasSize(500);

        String unenqueuedPlan = plan("""
                SELECT * FROM tasks
                WHERE enqueued_at IS NULL AND status IN ('queued', 'running')
                  AND created_at < now() - make_interval(secs => -60)
                  AND (created_at, id) > ('epoch'::timestamptz, '00000000-0000-0000-0000-000000000000'::uuid)
                ORDER BY created_at, id LIMIT 500""");
        assertThat(unenqueuedPlan).contains("tasks_unenqueued_open_idx").doesNotContain("Rows Removed by Filter")
                .doesNotContain("Seq Scan");
        TaskRecord middle = store.openEnqueued(null, 10_000).get(10_000 - 1);
        String openPlan = plan("""
                SELECT * FROM tasks
                WHERE enqueued_at IS NOT NULL AND status IN ('queued', 'running')
                  AND (tenant, created_at, id) > ('%s', '%s'::timestamptz, '%s'::uuid)
                ORDER BY tenant, created_at, id LIMIT 500""".formatted(middle.tenant(), middle.createdAt(), middle.id()));
        assertThat(openPlan).as("open tasks in the index's order from where the last page ended, not all of them sorted")
                .contains("tasks_open_tenant_created_id_idx").contains("Index Cond").doesNotContain("Sort")
                .doesNotContain("Seq Scan").doesNotContain("Rows Removed by Filter");
    }

    /** {@code EXPLAIN ANALYZE} of the query, as text. */
    private String plan(String sql) {
        List<String> lines = db.database().jdbi().withHandle(h -> h.createQuery("EXPLAIN ANALYZE " + sql)
                .mapTo(String.class).list());
        return String.join("\n", lines);
    }

    @Test
    void aReplayedJobKeepsItsTaskOpenUntilItsReplayedAttemptEndsHoweverItsOtherJobsEnd() {
        // Both jobs dead-lettered: the task failed. Both letters replayed: the task runs again, and the first replayed
        // attempt to end must not let the other job's old failure end it while that job's attempt 2 still runs.
        TaskRecord task = task("acme", "claude-code", "demo");
        store.insert(task);
        String claude = JobMessage.jobId(task.id().toString(), "claude-code");
        String demo = JobMessage.jobId(task.id().toString(), "demo");
        store.recordOutcome(result(task, "claude-code", JobStatus.FAILED, "0.01"), List.of());
        assertThat(store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.01"), List.of())).isEqualTo(TaskStatus.FAILED);
        assertThat(store.reopen(task.id(), claude, 2)).isTrue();
        assertThat(store.reopen(task.id(), demo, 2)).isTrue();

        assertThat(store.recordOutcome(attempt(result(task, "claude-code", JobStatus.COMPLETED, "0.01"), 2), List.of()))
                .as("demo's attempt 2 has no outcome yet").isEqualTo(TaskStatus.RUNNING);
        TaskRecord open = store.find("acme", task.id()).orElseThrow();
        assertThat(open.status()).isEqualTo(TaskStatus.RUNNING);
        assertThat(open.completedAt()).isNull();
        assertThat(store.unenqueued(-60, 1000)).as("still the reconciler's until the replays mark it enqueued")
                .extracting(TaskRecord::id).contains(task.id());
        // A start of the replayed attempt changes nothing either.
        assertThat(store.recordOutcomes(List.of(), List.of(task.id()))).containsEntry(task.id(), TaskStatus.RUNNING);

        assertThat(store.recordOutcome(attempt(result(task, "demo", JobStatus.FAILED, "0.01"), 2), List.of()))
                .as("every job's latest attempt has ended").isEqualTo(TaskStatus.PARTIAL);
        assertThat(store.find("acme", task.id()).orElseThrow().completedAt()).isNotNull();
    }

    @Test
    void aTaskTwoReplaysReopenedIsMarkedEnqueuedOnlyOnceBothReplayedAttemptsAreConfirmed() {
        // Two letters of one task replayed at once: A reopens it, B reopens it, A's attempt reaches Redis and A marks
        // the task. B's Redis step has not happened (and may fail): the mark must wait for it, or the reconciler would
        // never look at the task again and B's attempt would never run.
        TaskRecord task = task("acme", "claude-code", "demo");
        store.insert(task);
        String a = JobMessage.jobId(task.id().toString(), "claude-code");
        String b = JobMessage.jobId(task.id().toString(), "demo");
        store.recordOutcome(result(task, "claude-code", JobStatus.FAILED, "0.01"), List.of());
        store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.01"), List.of());
        store.markAllEnqueued(List.of(task.id()));
        assertThat(store.reopen(task.id(), a, 2)).isTrue();
        assertThat(store.reopen(task.id(), b, 2)).isTrue();

        store.markVerified(List.of(task.id()), java.util.Map.of(a, 2));
        assertThat(store.unenqueued(-60, 1000)).as("B's attempt unconfirmed: still the reconciler's")
                .extracting(TaskRecord::id).contains(task.id());
        // A confirmation of an older attempt than the one due confirms nothing.
        store.markVerified(List.of(task.id()), java.util.Map.of(b, 1));
        assertThat(store.unenqueued(-60, 1000)).extracting(TaskRecord::id).contains(task.id());

        store.markVerified(List.of(task.id()), java.util.Map.of(b, 2));
        assertThat(store.unenqueued(-60, 1000)).as("both confirmed").extracting(TaskRecord::id).doesNotContain(task.id());

        // Replayed again (attempt 3 of B): unmarked until that attempt is confirmed, whoever marks.
        assertThat(store.reopen(task.id(), b, 3)).isTrue();
        store.markVerified(List.of(task.id()), java.util.Map.of());
        assertThat(store.unenqueued(-60, 1000)).extracting(TaskRecord::id).contains(task.id());
        store.markVerified(List.of(task.id()), java.util.Map.of(b, 3));
        assertThat(store.unenqueued(-60, 1000)).extracting(TaskRecord::id).doesNotContain(task.id());
    }

    @Test
    void aReplayedJobWhoseOtherJobStillRunsEndsTheTaskOnlyWhenBothHaveEnded() {
        TaskRecord task = task("acme", "claude-code", "demo");
        store.insert(task);
        store.recordOutcomes(List.of(), List.of(task.id()));
        String demo = JobMessage.jobId(task.id().toString(), "demo");
        assertThat(store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.01"), List.of())).isEqualTo(TaskStatus.RUNNING);
        assertThat(store.reopen(task.id(), demo, 2)).isTrue();
        assertThat(store.recordOutcome(result(task, "claude-code", JobStatus.COMPLETED, "0.01"), List.of()))
                .as("demo's replayed attempt still to run").isEqualTo(TaskStatus.RUNNING);
        assertThat(store.recordOutcome(attempt(result(task, "demo", JobStatus.COMPLETED, "0.01"), 2), List.of()))
                .isEqualTo(TaskStatus.COMPLETED);
    }

    /** {@code result} as the outcome of another attempt of its job. */
    private static ResultRecord attempt(ResultRecord r, int attempt) {
        return new ResultRecord(r.taskId(), r.jobId(), r.cliName(), r.status(), r.outputSummary(), r.tokensIn(), r.tokensOut(),
                r.cacheReadTokens(), r.cacheWriteTokens(), r.cost(), r.usageSource(), r.model(), r.durationMs(), r.exitCode(),
                r.branch(), r.commitSha(), r.diffStat(), r.workerId(), attempt, r.createdAt(), r.patch());
    }

    @Test
    void resultRowsWrittenTogetherKeepEveryValueAsWrittenNullsIncluded() {
        // The group commit binds one array per column: text an array literal could mistake, non-ASCII text, and the
        // columns a run may leave empty (exit code, branch, commit, model, patch) must come back as written.
        List<String> awkward = List.of("NULL", "", "\"quoted\" {braces}, commas", "back\\slash \\\"", "line\nbreak\ttab",
                "ünïcödé — 漢字 🚀");
        List<TaskStore.Outcome> outcomes = new java.util.ArrayList<>();
        List<ResultRecord> written = new java.util.ArrayList<>();
        for (int i = 0; i < awkward.size(); i++) {
            TaskRecord task = task("acme", "demo");
            store.insert(task);
            boolean empty = i % 2 == 0;
            ResultRecord result = new ResultRecord(task.id(), JobMessage.jobId(task.id().toString(), "demo"), "demo",
                    JobStatus.COMPLETED, awkward.get(i), 100L + i, 20L + i, i, 2L * i, new java.math.BigDecimal("0.00012" + i),
                    "agent", empty ? null : awkward.get(i), 1_500L + i, empty ? null : i - 3, empty ? null : "kage/" + awkward.get(i),
                    empty ? null : "abc" + i, empty ? null : awkward.get(i), "w" + i, 1 + i, null, empty ? null : awkward.get(i));
            written.add(result);
            outcomes.add(new TaskStore.Outcome(result, List.of()));
        }
        store.recordOutcomes(outcomes, List.of());
        for (ResultRecord expected : written) {
            assertThat(store.results(expected.taskId())).singleElement().satisfies(read -> {
                assertThat(read.jobId()).isEqualTo(expected.jobId());
                assertThat(read.cliName()).isEqualTo(expected.cliName());
                assertThat(read.status()).isEqualTo(expected.status());
                assertThat(read.usageSource()).isEqualTo(expected.usageSource());
                assertThat(read.tokensOut()).isEqualTo(expected.tokensOut());
                assertThat(read.cacheReadTokens()).isEqualTo(expected.cacheReadTokens());
                assertThat(read.totalTokens()).isEqualTo(expected.totalTokens());
                assertThat(read.outputSummary()).isEqualTo(expected.outputSummary());
                assertThat(read.model()).isEqualTo(expected.model());
                assertThat(read.exitCode()).isEqualTo(expected.exitCode());
                assertThat(read.branch()).isEqualTo(expected.branch());
                assertThat(read.commitSha()).isEqualTo(expected.commitSha());
                assertThat(read.diffStat()).isEqualTo(expected.diffStat());
                assertThat(read.patch()).isEqualTo(expected.patch());
                assertThat(read.workerId()).isEqualTo(expected.workerId());
                assertThat(read.attempt()).isEqualTo(expected.attempt());
                assertThat(read.tokensIn()).isEqualTo(expected.tokensIn());
                assertThat(read.cacheWriteTokens()).isEqualTo(expected.cacheWriteTokens());
                assertThat(read.durationMs()).isEqualTo(expected.durationMs());
                assertThat(read.cost()).isEqualByComparingTo(expected.cost());
            });
        }
    }

    @Test
    void theTaskEndsOnlyWhenEveryJobHasAnOutcome() {
        TaskRecord task = task("acme", "claude-code", "demo");
        store.insert(task);
        store.recordOutcomes(List.of(), List.of(task.id()));
        assertThat(store.recordOutcome(result(task, "demo", JobStatus.COMPLETED, "0.01"), List.of())).isEqualTo(TaskStatus.RUNNING);
        assertThat(store.recordOutcome(result(task, "claude-code", JobStatus.FAILED, "0.02"), List.of()))
                .isEqualTo(TaskStatus.PARTIAL);
        TaskRecord done = store.find("acme", task.id()).orElseThrow();
        assertThat(done.status()).isEqualTo(TaskStatus.PARTIAL);
        assertThat(done.completedAt()).isNotNull();
    }

    @Test
    void jobsFinishingAtTheSameMomentBothCountTowardsTheTasksStatus() throws Exception {
        for (int round = 0; round < 20; round++) {
            TaskRecord task = task("acme", "a", "b", "c", "d");
            store.insert(task);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            CountDownLatch start = new CountDownLatch(1);
            List<Future<TaskStatus>> statuses = List.of("a", "b", "c", "d").stream()
                    .map(agent -> pool.submit(() -> {
                        start.await();
                        return store.recordOutcome(result(task, agent, JobStatus.COMPLETED, "0.01"), List.of());
                    }))
                    .toList();
            start.countDown();
            long finals = 0;
            for (Future<TaskStatus> status : statuses) {
                if (status.get() == TaskStatus.COMPLETED) {
                    finals++;
                }
            }
            pool.shutdown();
            assertThat(finals).as("exactly one job sees the task complete").isEqualTo(1);
            assertThat(store.find("acme", task.id()).orElseThrow().status()).isEqualTo(TaskStatus.COMPLETED);
        }
    }

    @Test
    void aSecondOutcomeForTheSameJobIsIgnoredWithItsErrors() {
        TaskRecord task = task("acme", "demo");
        store.insert(task);
        store.recordOutcome(result(task, "demo", JobStatus.COMPLETED, "0.01"), List.of(budgetViolation(task, "demo")));
        store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.99"), List.of(budgetViolation(task, "demo")));
        assertThat(store.results(task.id())).singleElement().satisfies(r -> {
            assertThat(r.status()).isEqualTo(JobStatus.COMPLETED);
            assertThat(r.cost()).isEqualByComparingTo("0.01");
            assertThat(r.totalTokens()).isEqualTo(120);
        });
        assertThat(store.errors(task.id())).singleElement().satisfies(e -> {
            assertThat(e.errorType()).isEqualTo("BudgetExceededError");
            assertThat(e.detailsJson()).contains("\"token_limit\": 50000");
        });
    }

    @Test
    void theMostARunIsTakenToCostFitsItsRow() {
        // Usage clamps what an agent reports to MAX_COST_USD; the row must hold it (numeric(14, 6) refused it).
        TaskRecord task = task("acme", "demo");
        store.insert(task);
        String most = dev.kage.tokens.Usage.MAX_COST_USD.setScale(6).toPlainString();
        store.recordOutcome(result(task, "demo", JobStatus.COMPLETED, most), List.of());
        assertThat(store.results(task.id())).singleElement()
                .satisfies(r -> assertThat(r.cost()).isEqualByComparingTo(dev.kage.tokens.Usage.MAX_COST_USD));
    }
}
