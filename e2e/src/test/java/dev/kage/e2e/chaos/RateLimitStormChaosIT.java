package dev.kage.e2e.chaos;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.e2e.Fleet;
import dev.kage.testing.PrivateRedis;
import dev.kage.testing.ScriptedModelServer;
import dev.kage.testing.ScriptedModelServer.Reply;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chaos scenario 4, 429 storm: a coordinator and three workers on a private {@code redis-server} (so its command
 * counters count this fleet only) run an {@code openai-compatible} agent against the scripted model server, with a
 * backlog that never runs dry. After a calm phase the endpoint answers every call with 429 ({@code Retry-After} and
 * OpenAI's {@code x-ratelimit-*} headers) for {@code storm_seconds}, then serves again. The seed's defaults apply
 * ({@code RATE_LIMIT_BACKOFF_BASE} 1, {@code RATE_LIMIT_BACKOFF_MAX} 60, {@code RATE_LIMIT_MAX_RETRIES} 5).
 *
 * <p>Passes when: no hot loop — Redis commands per second during the storm stay at or below those of the calm phase
 * (when the fleet does real work; a fleet that spins on 429s would multiply them), and calls to the endpoint during
 * the storm stay at or below one per job per retry; every job ends, {@code completed}, or {@code failed} with its final
 * (not retryable) {@code RateLimitError} row after its retries — nothing else; and the completion rate in the
 * {@code measure_seconds} after the storm (and its last {@code Retry-After}) is at least 80 % of the rate before it.
 *
 * <p>Scale (see {@link Chaos}): {@code storm_seconds} 10 (ci) / 30 (full), {@code measure_seconds} 10 / 30.
 */
class RateLimitStormChaosIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final int WORKERS = 3;
    private static final int SLOTS = 4;
    private static final int RETRY_AFTER_SECONDS = 2;
    private static final Duration CALL_TAKES = Duration.ofMillis(300);
    private static final double RECOVERED_SHARE = 0.8;
    /**
     * The agent's configured limit (and the endpoint's advertised one), requests a minute: above what the fleet can do
     * (~16 calls/s here), so that only the storm slows it. A limit that binds after the storm but not before it (a
     * sliding minute starts empty: the calm phase ran at 16/s under a limit of 10/s) made the rates incomparable.
     */
    private static final int LIMIT_PER_MINUTE = 6000;
    /** More completions a second than the fleet manages, to size the calm phase's backlog. */
    private static final int BACKLOG_PER_SECOND = 25;

    @TempDir
    Path dir;

    @Test
    void a429StormCausesNoHotLoopEveryJobEndsAndTheFleetGetsItsRateBack() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        Assumptions.assumeTrue(Chaos.longAsked(), "a long scenario: ops/chaos/run.sh runs it (kage.chaos.long=true), ./mvnw verify does not");
        int storm = Chaos.intSetting("storm_seconds", 10, 30);
        int measure = Chaos.intSetting("measure_seconds", 10, 30);
        Path origin = Chaos.createRepo(dir.resolve("origin"));
        Path runs = Files.createDirectories(dir.resolve("runs"));
        AtomicLong stormFrom = new AtomicLong(Long.MAX_VALUE);
        AtomicLong stormUntil = new AtomicLong(Long.MAX_VALUE);
        try (ScriptedModelServer server = ScriptedModelServer.start();
             PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             RedisClient client = RedisClient.create(redis.url());
             StatefulRedisConnection<String, String> counters = client.connect();
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "chaos-rate-limit-storm"))) {
            server.otherwise(n -> {
                long now = System.nanoTime();
                if (now >= stormFrom.get() && now < stormUntil.get()) {
                    return Reply.tooManyRequests(RETRY_AFTER_SECONDS).withHeaders(Map.of("x-ratelimit-limit-requests", Integer.toString(LIMIT_PER_MINUTE),
                            "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", RETRY_AFTER_SECONDS + "s"));
                }
                return Reply.ok("done", 20, 4).after(CALL_TAKES).withHeaders(Map.of("x-ratelimit-limit-requests", Integer.toString(LIMIT_PER_MINUTE),
                        "x-ratelimit-remaining-requests", Integer.toString(LIMIT_PER_MINUTE - 100), "x-ratelimit-reset-requests", "1s"));
            }).warmUp();
            Path agents = dir.resolve("agents.yml");
            Files.writeString(agents, """
                    agents:
                      api:
                        type: openai-compatible
                        base_url: %s
                        model: scripted
                        limits: {requests: %d, window_seconds: 60}
                    """.formatted(server.openAiBaseUrl(), LIMIT_PER_MINUTE));
            Map<String, String> env = new HashMap<>();
            env.put("KAGE_AGENTS_FILE", agents.toString());
            env.put("E2E_LOG_DIR", runs.toString());
            env.put("REDIS_URL", redis.url());
            env.put("KAGE_PUSH_BRANCHES", "false");
            Map<String, String> workerEnv = new HashMap<>(env);
            workerEnv.put("MAX_PARALLEL_CLIS", Integer.toString(SLOTS));
            Api api = new Api(fleet.port);
            long began = System.nanoTime();
            List<Process> processes = new ArrayList<>();
            processes.add(fleet.startCoordinator(env));
            fleet.awaitHealthy(); // first, so four JVMs do not start at once on a small machine
            for (int w = 0; w < WORKERS; w++) {
                processes.add(fleet.startWorker("storm-w" + w, dir.resolve("work" + w), origin, workerEnv));
            }
            fleet.awaitHealthy();
            String workerKeys = fleet.redis.namespace() + ":worker:*";
            await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(300))
                    .until(() -> counters.sync().keys(workerKeys).size() >= WORKERS);

            // Idle: the fleet's Redis commands per second with nothing to do, for reference.
            double idleOps = opsPerSecond(counters, Duration.ofSeconds(5));

            // A backlog that never runs dry: the calm phase, the storm and the measuring after it, at the calm rate. For
            // the calm phase, more jobs than the fleet can run in it (and the time to reach it): a
            // backlog that ran out during the calm measuring made its rate (and its Redis commands/s, the yardstick of
            // the storm's) a fraction of the fleet's (60 jobs: 1.6 completions/s at full scale, 7.2 after the storm).
            List<String> taskIds = new ArrayList<>();
            submit(api, origin, BACKLOG_PER_SECOND * (measure + 20) + 20, taskIds);
            long calmFrom = System.nanoTime();
            await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200)).until(() -> completed(fleet) >= 10);
            long calmCompletedFrom = completed(fleet);
            long calmCommandsFrom = commands(counters);
            long calmMeasureFrom = System.nanoTime();
            await().pollDelay(Duration.ofSeconds(measure)).atMost(Duration.ofSeconds(measure + 5)).until(() -> true);
            double calmSeconds = (System.nanoTime() - calmMeasureFrom) / 1e9;
            double calmRate = (completed(fleet) - calmCompletedFrom) / calmSeconds;
            double calmOps = (commands(counters) - calmCommandsFrom) / calmSeconds;
            // Keep the backlog: enough for the storm and the measuring after it at the calm rate, with room to spare.
            int more = (int) Math.ceil(calmRate * (storm + measure + RETRY_AFTER_SECONDS + 30) * 1.5) + 20;
            submit(api, origin, more, taskIds);

            int requestsBefore = server.requests().size();
            long stormCommandsFrom = commands(counters);
            long stormStart = System.nanoTime();
            stormFrom.set(stormStart);
            stormUntil.set(stormStart + Duration.ofSeconds(storm).toNanos());
            await().pollDelay(Duration.ofSeconds(storm)).atMost(Duration.ofSeconds(storm + 5)).until(() -> true);
            double stormSeconds = (System.nanoTime() - stormStart) / 1e9;
            double stormOps = (commands(counters) - stormCommandsFrom) / stormSeconds;
            long stormCalls = server.requests().stream().filter(r -> r.answeredStatus() == 429).count();
            long stormJobs = 0;
            long completedAtStormEnd = completed(fleet);

            // After: the last Retry-After and the longest backoff a job was given may still run; measure once calls succeed.
            await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(200))
                    .until(() -> completed(fleet) >= completedAtStormEnd + 5);
            long recoveredAfterMs = (System.nanoTime() - stormUntil.get()) / 1_000_000;
            long afterCompletedFrom = completed(fleet);
            long afterFrom = System.nanoTime();
            await().pollDelay(Duration.ofSeconds(measure)).atMost(Duration.ofSeconds(measure + 5)).until(() -> true);
            double afterRate = (completed(fleet) - afterCompletedFrom) / ((System.nanoTime() - afterFrom) / 1e9);
            long queuedAtEnd = fleet.count("SELECT count(*) FROM tasks WHERE status = 'queued'");

            // Every job ends: cancel nothing, just wait for the backlog to drain.
            await().atMost(Duration.ofSeconds(300)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status NOT IN ('completed', 'failed')") == 0);
            long took = Duration.ofNanos(System.nanoTime() - began).toSeconds();
            int jobs = taskIds.size();
            Map<String, Long> byStatus = fleet.query("SELECT status, count(*) FROM tasks GROUP BY status").stream()
                    .collect(Collectors.toMap(r -> r.split(":")[0], r -> Long.parseLong(r.split(":")[1])));
            long failed = byStatus.getOrDefault("failed", 0L);
            long failedWithFinalRow = fleet.count("""
                    SELECT count(*) FROM tasks t WHERE t.status = 'failed' AND EXISTS (SELECT 1 FROM task_errors e
                    WHERE e.task_id = t.id AND e.error_type = 'RateLimitError' AND NOT e.retryable)""");
            long completedWithResult = fleet.count("""
                    SELECT count(*) FROM tasks t WHERE t.status = 'completed'
                    AND EXISTS (SELECT 1 FROM execution_results r WHERE r.task_id = t.id AND r.status = 'completed')""");
            stormJobs = fleet.count("SELECT count(DISTINCT task_id) FROM task_errors WHERE error_type = 'RateLimitError'");
            long retryableRows = fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'RateLimitError' AND retryable");
            long stormCallsAll = server.requests().stream().filter(r -> r.answeredStatus() == 429).count();
            int maxRetries = 5;
            long died = processes.stream().filter(p -> !p.isAlive()).count();
            long serverErrors = api.serverErrors();
            String logs = fleet.log("storm-w0") + fleet.log("storm-w1") + fleet.log("storm-w2");
            boolean lowered = logs.contains("effective rate lowered") || logs.contains("cooling down after a 429");

            boolean noHotLoop = stormOps <= Math.max(calmOps, idleOps * 2) && stormCallsAll <= stormJobs * (maxRetries + 1L);
            boolean everyJobEnded = byStatus.keySet().stream().allMatch(s -> s.equals("completed") || s.equals("failed"))
                    && completedWithResult + failedWithFinalRow == jobs;
            boolean recovered = afterRate >= calmRate * RECOVERED_SHARE && queuedAtEnd > 0;
            boolean pass = noHotLoop && everyJobEnded && recovered && died == 0 && serverErrors == 0 && stormCalls > 0;
            Chaos.report("rate-limit-storm", String.format(
                    "jobs=%d workers=%d storm=%ds retry_after=%ds redis_ops_per_s{idle=%.0f,calm=%.0f,storm=%.0f} "
                            + "calls_429=%d (during the storm %d, jobs hit %d, bound %d) completed=%d failed=%d (with final RateLimitError %d) "
                            + "retryable_429_rows=%d rate_per_s{before=%.2f,after=%.2f} recovered_after=%dms processes_died=%d 5xx=%d took=%ds",
                    jobs, WORKERS, storm, RETRY_AFTER_SECONDS, idleOps, calmOps, stormOps, stormCallsAll, stormCalls, stormJobs,
                    stormJobs * (maxRetries + 1L), completedWithResult, failed, failedWithFinalRow, retryableRows, calmRate, afterRate,
                    recoveredAfterMs, died, serverErrors, took), pass);
            System.out.println("rate-limit-storm: requests before the storm " + requestsBefore + ", calm phase began "
                    + (calmMeasureFrom - calmFrom) / 1_000_000 + " ms after the first submit");

            assertThat(stormCalls).as("the endpoint answered 429 during the storm").isPositive();
            assertThat(stormOps).as("Redis commands/s during the storm (calm %.0f, idle %.0f)", calmOps, idleOps)
                    .isLessThanOrEqualTo(Math.max(calmOps, idleOps * 2));
            assertThat(stormCallsAll).as("429 calls: at most one per job per retry").isLessThanOrEqualTo(stormJobs * (maxRetries + 1L));
            assertThat(byStatus.keySet()).as("final states").allMatch(s -> s.equals("completed") || s.equals("failed"));
            assertThat(completedWithResult + failedWithFinalRow).as("completed with a result, or failed with the final RateLimitError row")
                    .isEqualTo(jobs);
            assertThat(queuedAtEnd).as("the backlog lasted through the measuring after the storm").isPositive();
            assertThat(afterRate).as("completions/s after the storm against %.2f before", calmRate)
                    .isGreaterThanOrEqualTo(calmRate * RECOVERED_SHARE);
            assertThat(lowered).as("the workers slowed down for the 429s").isTrue();
            assertThat(died).as("processes that died").isZero();
            assertThat(serverErrors).as("5xx: " + api.summary()).isZero();
        }
    }

    private static void submit(Api api, Path origin, int count, List<String> taskIds) throws Exception {
        for (int from = 0; from < count; from += 100) {
            ObjectNode body = JSON.createObjectNode();
            var tasks = body.putArray("tasks");
            for (int i = from; i < Math.min(count, from + 100); i++) {
                tasks.addObject().put("description", "storm job " + (taskIds.size() + i)).put("repo", origin.toString())
                        .putArray("cli_assignments").addObject().put("cli_name", "api").put("timeout", 120);
            }
            Api.Answer answer = api.post("submit", "/api/v1/tasks:batch", KEY, body.toString());
            assertThat(answer.status()).as(answer.body()).isEqualTo(202);
            JSON.readTree(answer.body()).get("tasks").forEach(t -> taskIds.add(t.get("task_id").asText()));
        }
    }

    private static long completed(Fleet fleet) throws Exception {
        return fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'");
    }

    /** The server's commands per second over {@code over}. */
    private static double opsPerSecond(StatefulRedisConnection<String, String> redis, Duration over) {
        long from = commands(redis);
        long started = System.nanoTime();
        await().pollDelay(over).atMost(over.plusSeconds(5)).until(() -> true);
        return (commands(redis) - from) / ((System.nanoTime() - started) / 1e9);
    }

    /** {@code total_commands_processed} (this test's own INFO calls add one each). */
    private static long commands(StatefulRedisConnection<String, String> redis) {
        for (String line : redis.sync().info("stats").split("\r?\n")) {
            if (line.startsWith("total_commands_processed:")) {
                return Long.parseLong(line.substring(line.indexOf(':') + 1).strip());
            }
        }
        throw new IllegalStateException("no total_commands_processed in INFO stats");
    }
}
