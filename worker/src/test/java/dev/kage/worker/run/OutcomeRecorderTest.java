package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
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
                TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy)), db.schema(), "proxied", 2);
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

    private long messages(String start) {
        return log.list.stream().filter(e -> e.getFormattedMessage().startsWith(start)).count();
    }
}
