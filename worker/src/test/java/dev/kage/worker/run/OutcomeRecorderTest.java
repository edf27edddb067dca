package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.config.DatabaseUrl;
import dev.kage.store.Database;
import dev.kage.store.StoreTestData;
import dev.kage.store.TaskStore;
import dev.kage.task.JobStatus;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Outcomes written while Postgres is cut off (a TCP proxy in front of the real server resets every
 * connection) go to the agent's outbox in real Redis, and are written once it answers again.
 */
class OutcomeRecorderTest {
    private final DatabaseFixture db = new DatabaseFixture();
    private final RedisFixture redis = new RedisFixture();
    private final ListAppender<ILoggingEvent> log = new ListAppender<>();
    private final Logger logger = (Logger) LoggerFactory.getLogger(OutcomeRecorder.class);
    private TcpProxy proxy;
    private Database proxied;

    @BeforeEach
    void setUp() {
        URI url = URI.create(TestServices.databaseUrl());
        proxy = TcpProxy.start(url.getHost(), url.getPort() > 0 ? url.getPort() : 5432);
        proxied = Database.open(DatabaseUrl.parse("KAGE_TEST_DATABASE_URL",
                TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy)), db.schema(), "proxied", 2,
                // A connection opened while the proxy is cut or restored can be left half set up; a short socket
                // timeout turns it into a quick error and the next flush's fresh connection, not a 60 s hang.
                5);
        log.start();
        logger.addAppender(log);
    }

    @AfterEach
    void tearDown() {
        logger.detachAppender(log);
        proxied.close();
        proxy.close();
        redis.close();
        db.close();
    }

    @Test
    void anOutageIsLoggedOnceAndItsEndWhenTheOutboxIsWrittenWhateverOrderTheAgentsAreFlushedIn() {
        TaskStore store = db.store();
        TaskRecord first = StoreTestData.task("t1", "a", "b");
        TaskRecord second = StoreTestData.task("t1", "a");
        store.insert(first);
        store.insert(second);
        OutcomeRecorder outcomes = new OutcomeRecorder(new TaskStore(proxied), redis.keys(), redis.redis());
        var live = new dev.kage.task.LiveTaskState(redis.keys(), redis.redis());
        outcomes.announceLateRecords(live, new dev.kage.events.EventLog(redis.keys(), redis.redis(), java.time.Clock.systemUTC()));

        proxy.cut();
        assertThat(outcomes.record("a", StoreTestData.result(first, "a", JobStatus.COMPLETED, "0.01"), List.of())).isEmpty();
        // The worker's tidy loop flushes every agent it serves: agent b's outbox is empty, which says nothing about Postgres.
        assertThat(outcomes.flush("a")).isZero();
        assertThat(outcomes.flush("b")).isZero();
        assertThat(outcomes.record("a", StoreTestData.result(second, "a", JobStatus.COMPLETED, "0.01"), List.of())).isEmpty();
        assertThat(outcomes.pending("a")).isEqualTo(2);
        assertThat(messages("Postgres unavailable")).as("one outage, logged once").isEqualTo(1);

        proxy.restore();
        assertThat(outcomes.flush("b")).isZero();
        assertThat(messages("Postgres answers again")).as("an empty outbox is no sign that Postgres answers").isZero();
        // The first flush may meet a pooled connection the cut reset; the worker's tidy loop flushes again, as here.
        await().atMost(Duration.ofSeconds(20)).until(() -> outcomes.flush("a") > 0 && outcomes.pending("a") == 0);
        assertThat(messages("Postgres answers again")).isEqualTo(1);
        assertThat(store.results(first.id())).hasSize(1);
        assertThat(store.results(second.id())).hasSize(1);
        // Announced as written: their finish was announced without a task status (it was not known), so a task's event
        // stream waited for one that ends it for ever. Job b of the first task has not run: it stays running.
        List<Map<String, String>> recorded = redis.redis().xrange(redis.keys().events(), io.lettuce.core.Range.create("-", "+"))
                .stream().map(m -> m.getBody()).filter(e -> "job.recorded".equals(e.get("type"))).toList();
        assertThat(recorded).anySatisfy(e -> assertThat(e).containsEntry("task_id", second.id().toString())
                .containsEntry("tenant", "t1").containsEntry("agent", "a").containsEntry("status", "completed")
                .containsEntry("task_status", "completed"));
        assertThat(recorded).anySatisfy(e -> assertThat(e).containsEntry("task_id", first.id().toString())
                .containsEntry("task_status", "running"));
        assertThat(live.all("t1", second.id().toString())).containsEntry("job:a", "completed").containsEntry("status", "completed");

        proxy.cut();
        TaskRecord third = StoreTestData.task("t1", "b");
        store.insert(third);
        assertThat(outcomes.record("b", StoreTestData.result(third, "b", JobStatus.COMPLETED, "0.01"), List.of())).isEmpty();
        assertThat(messages("Postgres unavailable")).as("a second outage is logged again").isEqualTo(2);
        proxy.restore();
        await().atMost(Duration.ofSeconds(20)).until(() -> outcomes.flush("b") > 0);
        assertThat(store.results(third.id())).hasSize(1);
        assertThat(messages("Postgres answers again")).isEqualTo(2);
    }

    @Test
    void outcomesPostgresRefusesForTheirContentAreSetAsideAndStopNeitherTheBatchNorTheOutbox() throws Exception {
        TaskStore store = db.store();
        TaskRecord good = StoreTestData.task("t1", "a");
        TaskRecord overflowing = StoreTestData.task("t1", "a");
        TaskRecord nulls = StoreTestData.task("t1", "a");
        TaskRecord later = StoreTestData.task("t1", "a");
        store.insertAll(List.of(good, overflowing, nulls, later), java.util.UUID.randomUUID());
        TaskRecord rowless = StoreTestData.task("t1", "a");
        OutcomeRecorder outcomes = new OutcomeRecorder(store, redis.keys(), redis.redis());
        // A cost beyond numeric(16, 6): Postgres refuses the statement (SQLSTATE 22003), whatever else it carries.
        dev.kage.task.ResultRecord tooCostly = StoreTestData.result(overflowing, "a", JobStatus.COMPLETED, "123456789012.5");
        // NULs in an agent's output and stderr (refused by text and jsonb) are replaced when the outcome is made.
        dev.kage.task.ResultRecord withNul = withSummary(StoreTestData.result(nulls, "a", JobStatus.FAILED, "0.01"),
                "binary\0output");
        dev.kage.task.ErrorRecord nulError = new dev.kage.task.ErrorRecord(nulls.id(), withNul.jobId(), "a", "AgentError",
                "exit 1: \0", "{\"stderr_tail\": \"a\\u0000b\", \"path\": \"C:\\\\u0000x\"}", false, null, null);

        // One group commit carries all four: the writer is held on a locked task row meanwhile. The refused outcome is
        // set aside (its job ended with a failed result instead), its neighbours are written.
        TaskRecord blocker = StoreTestData.task("t1", "a");
        store.insert(blocker);
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<java.util.concurrent.Future<Optional<TaskStatus>>> futures = new java.util.ArrayList<>();
            try (org.jdbi.v3.core.Handle locker = db.database().jdbi().open()) {
                locker.begin();
                locker.createQuery("SELECT id FROM tasks WHERE id = :id FOR UPDATE").bind("id", blocker.id())
                        .mapTo(String.class).one();
                Future<Optional<TaskStatus>> held = pool.submit(() -> outcomes.record("a",
                        StoreTestData.result(blocker, "a", JobStatus.COMPLETED, "0.01"), List.of()));
                await().atMost(Duration.ofSeconds(10)).until(() -> outcomes.outcomesWaiting() == 0);
                futures.add(pool.submit(() -> outcomes.record("a", StoreTestData.result(good, "a", JobStatus.COMPLETED, "0.01"),
                        List.of())));
                futures.add(pool.submit(() -> outcomes.record("a", tooCostly, List.of())));
                futures.add(pool.submit(() -> outcomes.record("a", withNul, List.of(nulError))));
                futures.add(pool.submit(() -> outcomes.record("a", StoreTestData.result(rowless, "a", JobStatus.COMPLETED,
                        "0.01"), List.of())));
                await().atMost(Duration.ofSeconds(10)).until(() -> outcomes.outcomesWaiting() == 4);
                locker.rollback();
                assertThat(held.get(20, TimeUnit.SECONDS)).contains(TaskStatus.COMPLETED);
            }
            assertThat(futures.get(0).get(20, TimeUnit.SECONDS)).contains(TaskStatus.COMPLETED);
            assertThat(futures.get(1).get(20, TimeUnit.SECONDS)).as("ended with a failed result instead").contains(TaskStatus.FAILED);
            assertThat(futures.get(2).get(20, TimeUnit.SECONDS)).contains(TaskStatus.FAILED);
            assertThat(futures.get(3).get(20, TimeUnit.SECONDS)).as("no task row: set aside").isEmpty();
        }
        assertThat(store.results(overflowing.id())).singleElement().satisfies(r -> {
            assertThat(r.status()).isEqualTo(JobStatus.FAILED);
            assertThat(r.outputSummary()).contains("Postgres refused the outcome of job " + tooCostly.jobId());
            assertThat(r.cost()).isZero();
        });
        assertThat(store.results(good.id())).hasSize(1);
        assertThat(store.results(nulls.id())).singleElement().satisfies(r ->
                assertThat(r.outputSummary()).isEqualTo("binary\uFFFDoutput"));
        String details = db.database().jdbi().withHandle(h -> h.createQuery(
                "SELECT error_message || ' ' || error_details::text FROM task_errors WHERE task_id = :id")
                .bind("id", nulls.id()).mapTo(String.class).one());
        assertThat(details).contains("exit 1: \uFFFD").contains("a\uFFFDb").contains("C:\\\\u0000x");
        assertThat(redis.redis().lrange(redis.keys().outboxRefused("a"), 0, -1)).hasSize(2)
                .anySatisfy(entry -> assertThat(entry).contains(tooCostly.jobId()))
                .anySatisfy(entry -> assertThat(entry).contains(rowless.id().toString()));
        assertThat(outcomes.pending("a")).as("nothing waits in the outbox").isZero();

        // The outbox: an entry Postgres refuses (and one without its task row) no longer stops the flush at it.
        redis.redis().del(redis.keys().outboxRefused("a"));
        ObjectMapper json = new ObjectMapper().registerModule(new com.fasterxml.jackson.datatype.jsr310.JavaTimeModule());
        redis.redis().rpush(redis.keys().outbox("a"),
                json.writeValueAsString(new OutcomeRecorder.Spooled(tooCostly, List.of())),
                json.writeValueAsString(new OutcomeRecorder.Spooled(StoreTestData.result(rowless, "a", JobStatus.COMPLETED, "0.01"),
                        List.of())),
                json.writeValueAsString(new OutcomeRecorder.Spooled(StoreTestData.result(later, "a", JobStatus.COMPLETED, "0.01"),
                        List.of())));
        assertThat(outcomes.flush("a")).isEqualTo(1);
        assertThat(outcomes.pending("a")).isZero();
        assertThat(store.results(later.id())).hasSize(1);
        assertThat(redis.redis().llen(redis.keys().outboxRefused("a"))).isEqualTo(2);
        assertThat(messages("Postgres refused the outcome of job")).isEqualTo(4);
    }

    @Test
    void anOutcomeNeitherPostgresNorRedisTakesFailsItsCallerAndTheWriterGoesOn() throws Exception {
        TaskStore store = db.store();
        TaskRecord overflowing = StoreTestData.task("t1", "a");
        TaskRecord good = StoreTestData.task("t1", "a");
        store.insertAll(List.of(overflowing, good), java.util.UUID.randomUUID());
        OutcomeRecorder outcomes = new OutcomeRecorder(store, redis.keys(), redis.redis());
        // Postgres refuses the outcome for its content, and Redis refuses to keep it aside: its list's key holds a string.
        redis.redis().set(redis.keys().outboxRefused("a"), "not a list");
        // Not closed: a writer that died leaves its callers waiting for ever, and closing would wait for them.
        ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor();
        Future<Optional<TaskStatus>> refused = pool.submit(() -> outcomes.record("a",
                StoreTestData.result(overflowing, "a", JobStatus.COMPLETED, "123456789012.5"), List.of()));
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> refused.get(20, TimeUnit.SECONDS))
                .as("its caller learns it was kept nowhere (the job stays pending), rather than waiting for ever")
                .isInstanceOf(java.util.concurrent.ExecutionException.class)
                .hasRootCauseInstanceOf(io.lettuce.core.RedisCommandExecutionException.class);
        assertThat(pool.submit(() -> outcomes.record("a", StoreTestData.result(good, "a", JobStatus.COMPLETED, "0.01"),
                List.of())).get(20, TimeUnit.SECONDS)).as("the writer still writes").contains(TaskStatus.COMPLETED);
        assertThat(store.results(overflowing.id())).isEmpty();
        assertThat(store.results(good.id())).hasSize(1);
    }

    @Test
    void aJobWhoseOutcomeWasRefusedIsEndedThroughTheOutboxWhenPostgresGoesAwayBeforeItsFailedResult() {
        TaskStore store = db.store();
        TaskRecord task = StoreTestData.task("t1", "a");
        store.insert(task);
        OutcomeRecorder outcomes = new OutcomeRecorder(store, redis.keys(), redis.redis());
        // Postgres refuses the outcome for its content (a cost beyond numeric(16, 6)); then, as if it were shutting down,
        // it refuses the failed result that would end the job instead (SQLSTATE 57P01, raised by a trigger).
        db.database().jdbi().useHandle(h -> {
            h.execute("""
                    CREATE FUNCTION refuse_fallback() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                      IF NEW.output_summary LIKE 'Postgres refused the outcome%' THEN
                        RAISE EXCEPTION 'the database system is shutting down' USING ERRCODE = '57P01';
                      END IF;
                      RETURN NEW;
                    END $$""");
            h.execute("CREATE TRIGGER refuse_fallback BEFORE INSERT ON execution_results FOR EACH ROW EXECUTE FUNCTION refuse_fallback()");
        });
        dev.kage.task.ResultRecord tooCostly = StoreTestData.result(task, "a", JobStatus.COMPLETED, "123456789012.5");
        try {
            assertThat(outcomes.record("a", tooCostly, List.of())).as("kept in the outbox, as in any outage").isEmpty();
            assertThat(outcomes.pending("a")).isEqualTo(1);
            assertThat(store.find("t1", task.id()).orElseThrow().status()).isEqualTo(TaskStatus.QUEUED);
        } finally {
            db.database().jdbi().useHandle(h -> {
                h.execute("DROP TRIGGER refuse_fallback ON execution_results");
                h.execute("DROP FUNCTION refuse_fallback()");
            });
        }
        await().atMost(Duration.ofSeconds(20)).until(() -> outcomes.flush("a") > 0 && outcomes.pending("a") == 0);
        assertThat(store.find("t1", task.id()).orElseThrow().status()).as("never left running").isEqualTo(TaskStatus.FAILED);
        assertThat(store.results(task.id())).singleElement().satisfies(r -> {
            assertThat(r.status()).isEqualTo(JobStatus.FAILED);
            assertThat(r.outputSummary()).contains("Postgres refused the outcome of job " + tooCostly.jobId());
        });
        assertThat(redis.redis().lrange(redis.keys().outboxRefused("a"), 0, -1)).singleElement()
                .satisfies(entry -> assertThat(entry).contains("123456789012.5"));
    }

    private static dev.kage.task.ResultRecord withSummary(dev.kage.task.ResultRecord r, String summary) {
        return new dev.kage.task.ResultRecord(r.taskId(), r.jobId(), r.cliName(), r.status(), summary, r.tokensIn(),
                r.tokensOut(), r.cacheReadTokens(), r.cacheWriteTokens(), r.cost(), r.usageSource(), r.model(), r.durationMs(),
                r.exitCode(), r.branch(), r.commitSha(), r.diffStat(), r.workerId(), r.attempt(), r.createdAt(), r.patch());
    }

    @Test
    void aStartWrittenDuringAnOutageIsWrittenWhenPostgresAnswersAgain() {
        TaskStore store = db.store();
        TaskRecord started = StoreTestData.task("t1", "a");
        TaskRecord other = StoreTestData.task("t1", "a");
        store.insert(started);
        store.insert(other);
        OutcomeRecorder outcomes = new OutcomeRecorder(new TaskStore(proxied), redis.keys(), redis.redis());

        proxy.cut();
        outcomes.started(started.id());
        // Spooled: the write that carried the start (this one, or one before it) failed.
        assertThat(outcomes.record("a", StoreTestData.result(other, "a", JobStatus.COMPLETED, "0.01"), List.of())).isEmpty();
        assertThat(store.find("t1", started.id()).orElseThrow().status()).isEqualTo(TaskStatus.QUEUED);

        proxy.restore();
        // The worker's tidy loop flushes the outboxes every 2 s; a flush also sends the starts left over.
        await().atMost(Duration.ofSeconds(20)).until(() -> {
            outcomes.flush("a");
            return store.find("t1", started.id()).orElseThrow().status() == TaskStatus.RUNNING;
        });
        assertThat(store.results(other.id())).hasSize(1);
    }

    @Test
    void aJobThatEndsAtOnceCostsItsTaskRowOneUpdateEvenWhileTheWriterIsBehind() throws Exception {
        TaskStore store = db.store();
        // Every update of a task row, as the database sees it (a trigger in this test's own schema).
        db.database().jdbi().useHandle(h -> {
            h.execute("CREATE TABLE task_updates (task_id uuid, status text)");
            h.execute("CREATE FUNCTION log_task_update() RETURNS trigger LANGUAGE plpgsql AS "
                    + "$$ BEGIN INSERT INTO task_updates VALUES (NEW.id, NEW.status); RETURN NEW; END $$");
            h.execute("CREATE TRIGGER log_task_updates AFTER UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION log_task_update()");
        });
        TaskRecord first = StoreTestData.task("t1", "a");
        store.insert(first);
        List<TaskRecord> quick = new java.util.ArrayList<>();
        for (int i = 0; i < OutcomeRecorder.MAX_BATCH + 100; i++) {
            quick.add(StoreTestData.task("t1", "a"));
        }
        store.insertAll(quick, java.util.UUID.randomUUID());
        OutcomeRecorder outcomes = new OutcomeRecorder(store, redis.keys(), redis.redis());

        try (org.jdbi.v3.core.Handle locker = db.database().jdbi().open();
             var threads = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            // The writer is held in its first write, so more outcomes wait than one batch takes, their starts ripe.
            locker.begin();
            locker.execute("LOCK TABLE execution_results IN SHARE MODE");
            threads.submit(() -> outcomes.record("a", StoreTestData.result(first, "a", JobStatus.COMPLETED, "0.01"), List.of()));
            String waitingWriter = "SELECT count(*) FROM pg_stat_activity"
                    + " WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO execution_results%'";
            await().atMost(Duration.ofSeconds(10))
                    .until(() -> db.database().jdbi().withHandle(h -> h.createQuery(waitingWriter).mapTo(Long.class).one()) > 0);
            for (TaskRecord task : quick) {
                threads.submit(() -> {
                    outcomes.started(task.id());
                    return outcomes.record("a", StoreTestData.result(task, "a", JobStatus.COMPLETED, "0.01"), List.of());
                });
            }
            await().atMost(Duration.ofSeconds(10)).until(() -> outcomes.outcomesWaiting() == quick.size());
            await().pollDelay(OutcomeRecorder.START_RIPENS.multipliedBy(5)).until(() -> true);
            locker.rollback();
        }

        List<String> updates = db.database().jdbi().withHandle(h -> h.createQuery(
                "SELECT status FROM task_updates WHERE task_id <> :first").bind("first", first.id()).mapTo(String.class).list());
        assertThat(updates).as("one update per task: queued to completed").hasSize(quick.size()).containsOnly("completed");
    }

    private long messages(String start) {
        return log.list.stream().filter(e -> e.getFormattedMessage().startsWith(start)).count();
    }
}
