package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.redis.KageKeys;
import dev.kage.redis.Utf8Codec;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.Priority;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.PrivateRedis;
import io.lettuce.core.Range;
import io.lettuce.core.RedisClient;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * A coordinator that starts right after Redis did (a host that rebooted with both) waits, as one that saw Redis
 * restart does, until Redis has been up for {@code JobQueue.LOST_ENTRY_GRACE} before it enqueues the jobs Redis lost:
 * workers elsewhere may still run them until their next beat finds their entries gone.
 */
class ReconcilerGraceTest {
    @Test
    void aCoordinatorStartedWithAFreshRedisWaitsOutTheGraceBeforeEnqueuingLostJobs() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             TestCoordinator coordinator = new TestCoordinator("acme:acme-key-123", Map.of("REDIS_URL", redis.url()))) {
            // A task the API accepted before the reboot: its row confirmed enqueued, its job gone with Redis.
            TaskStore store = new TaskStore(coordinator.context().getBean(Database.class));
            TaskRecord task = new TaskRecord(UUID.randomUUID(), "acme", "lost in the reboot", TaskStatus.QUEUED, Priority.NORMAL,
                    null, "main", List.of(new Assignment("demo", 60)), null, 1000, Instant.now(), Instant.now(), null);
            store.insert(task);
            store.markAllEnqueued(List.of(task.id()));

            RedisClient client = RedisClient.create(redis.url());
            try (StatefulRedisConnection<String, String> connection = client.connect(Utf8Codec.INSTANCE)) {
                var commands = connection.sync();
                String stream = coordinator.context().getBean(KageKeys.class).jobStream("demo", Priority.NORMAL);
                StreamMessage<String, String> entry = Awaitility.await().atMost(Duration.ofSeconds(60))
                        .pollInterval(Duration.ofMillis(200))
                        .until(() -> commands.exists(stream) == 0 ? null : commands.xrange(stream, Range.create("-", "+")).stream()
                                .filter(m -> task.id().toString().equals(m.getBody().get("task_id"))).findFirst().orElse(null),
                                java.util.Objects::nonNull);
                // When Redis started, by its own clock, at the latest (uptime is whole seconds, rounded down).
                List<String> time = commands.time();
                long now = Long.parseLong(time.get(0)) * 1000 + Long.parseLong(time.get(1)) / 1000;
                long uptimeSeconds = Long.parseLong(commands.info("server").lines()
                        .filter(l -> l.startsWith("uptime_in_seconds:")).findFirst().orElseThrow().substring(18).strip());
                long startedAt = now - uptimeSeconds * 1000;
                long enqueuedAt = Long.parseLong(entry.getId().substring(0, entry.getId().indexOf('-')));
                assertThat(enqueuedAt - startedAt).as("ms from Redis's start to the lost job's enqueue")
                        .isGreaterThanOrEqualTo(dev.kage.queue.JobQueue.LOST_ENTRY_GRACE.toMillis() - 1000);
            } finally {
                client.shutdown();
            }
        }
    }
    /**
     * The reconciler's wiring of the re-pass: on its first pass, and whenever Redis is a new server process, every recent
     * cancel and every operator's rate-limit change is written back into Redis, without waiting out the grace.
     */
    @Test
    void cancelsAndLimitChangesAreWrittenBackOnTheFirstPassAndIntoARestartedRedisThatLostThem() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        String admin = "ops-key-12345";
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             TestCoordinator coordinator = new TestCoordinator("ops:" + admin + ",acme:acme-key-123", Map.of(
                     "REDIS_URL", redis.url(), "KAGE_ADMIN_TENANTS", "ops", "KAGE_RECONCILE_EVERY", "300ms"))) {
            TaskStore store = new TaskStore(coordinator.context().getBean(Database.class));
            TaskRecord task = new TaskRecord(UUID.randomUUID(), "acme", "cancelled before the restart", TaskStatus.QUEUED,
                    Priority.NORMAL, null, "main", List.of(new Assignment("demo", 60)), null, 1000, Instant.now(), Instant.now(),
                    null);
            store.insert(task);
            store.markAllEnqueued(List.of(task.id()));
            assertThat(coordinator.send("POST", "/api/v1/tasks/" + task.id() + "/cancel", "acme-key-123", null).statusCode())
                    .isEqualTo(202);
            // A worker configured the group; an operator changed it.
            coordinator.context().getBean(dev.kage.ratelimit.FleetRateLimiter.class).configure("claude-code",
                    new dev.kage.ratelimit.Limit(30, Duration.ofMinutes(1), 0, Duration.ofSeconds(1)));
            var changed = coordinator.send("PUT", "/api/v1/limits/claude-code", admin, "{\"requests\": 6, \"window_seconds\": 30}");
            assertThat(changed.statusCode()).as(changed.body()).isEqualTo(200);

            KageKeys keys = coordinator.context().getBean(KageKeys.class);
            String taskKey = keys.task("acme", task.id().toString());
            RedisClient client = RedisClient.create(redis.url());
            try (StatefulRedisConnection<String, String> connection = client.connect(Utf8Codec.INSTANCE)) {
                var commands = connection.sync();
                // Lost before the coordinator's first pass (its first reconcile runs 5 s after start): written back by it.
                commands.hdel(taskKey, "cancelled");
                Awaitility.await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(100))
                        .until(() -> "1".equals(commands.hget(taskKey, "cancelled")));

                // Redis restarts with nothing: a new run_id. The reconciler writes both back at its next pass.
                String before = runId(commands);
                redis.restart();
                assertThat(runId(commands)).isNotEqualTo(before);
                Awaitility.await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(100)).ignoreExceptions()
                        .until(() -> "1".equals(commands.hget(taskKey, "cancelled")));
                Awaitility.await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(100)).untilAsserted(() -> {
                    var limit = TestCoordinator.json(coordinator.get("/api/v1/limits/claude-code", admin));
                    assertThat(limit.at("/current/requests").asLong()).isEqualTo(6);
                    assertThat(limit.get("source").asText()).isEqualTo("api");
                });
            } finally {
                client.shutdown();
            }
        }
    }

    private static String runId(io.lettuce.core.api.sync.RedisCommands<String, String> commands) {
        return commands.info("server").lines().filter(l -> l.startsWith("run_id:")).findFirst().orElseThrow().substring(7).strip();
    }
}
