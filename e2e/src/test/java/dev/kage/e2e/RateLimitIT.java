package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.kage.testing.ScriptedModelServer;
import dev.kage.testing.ScriptedModelServer.Reply;
import dev.kage.testing.TestServices;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The fleet-wide rate limit as the provider would see it: worker processes, each with many slots, one
 * of them with a skewed clock; a local endpoint answering 429; a 429 storm.
 */
class RateLimitIT {
    private static final String KEY = "dev-key-12345";
    /** libfaketime (Debian package faketime), used with KAGE_TEST_FAKETIME=1. */
    private static final Path FAKETIME = Path.of("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");

    @TempDir
    Path dir;
    private Path origin;
    private Path runs;

    @BeforeEach
    void setUp() throws Exception {
        origin = FleetIT.createRepo(dir.resolve("origin"));
        runs = Files.createDirectories(dir.resolve("runs"));
    }

    /**
     * What the provider sees: every call's arrival at the scripted endpoint (its own clock, µs). Three worker
     * processes with 16 slots each, one of them seven seconds ahead, all asking for one agent limited to 20
     * calls per 2 s.
     */
    @Test
    void threeWorkersWithSixteenSlotsEachNeverCallMoreThanTheLimitInAnyWindowEvenWithASkewedClock() throws Exception {
        int limit = 20;
        long windowMicros = 2_000_000;
        int jobs = 140;
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.otherwise(n -> Reply.ok("done", 20, 4).after(Duration.ofMillis(100))).warmUp();
            Path agents = agents("""
                    agents:
                      limited:
                        type: openai-compatible
                        base_url: %s
                        model: scripted
                        limits: {requests: %d, window_seconds: 2, guard_ms: 100}
                    """.formatted(server.openAiBaseUrl(), limit));
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "rate-limit"))) {
                fleet.startCoordinator(env(agents, Map.of()));
                fleet.awaitHealthy();
                Map<String, String> slots = Map.of("MAX_PARALLEL_CLIS", "16");
                fleet.startWorker("rl-w1", dir.resolve("work1"), origin, env(agents, slots));
                fleet.startWorker("rl-w2", dir.resolve("work2"), origin, env(agents, slots));
                // Seven seconds ahead: through libfaketime where it is installed (the whole JVM's clock), and through
                // the process's own clock either way.
                Map<String, String> skewed = new HashMap<>(env(agents, slots));
                skewed.put("KAGE_CLOCK_OFFSET_MS", "7000");
                // libfaketime only when asked (KAGE_TEST_FAKETIME=1): it makes every clock read of that JVM ~300x
                // slower, and on a 2-core machine the starved JVM also starves the endpoint recording the calls,
                // which then bunches arrivals and measures its own stalls (seen in CI: 22 and 32 "in a window").
                boolean faketime = Files.exists(FAKETIME) && "1".equals(System.getenv("KAGE_TEST_FAKETIME"));
                if (faketime) {
                    skewed.put("LD_PRELOAD", FAKETIME.toString());
                    skewed.put("FAKETIME", "+7s");
                    skewed.put("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                }
                fleet.startWorker("rl-w3-skewed", dir.resolve("work3"), origin, skewed);
                fleet.awaitWorkers(3);

                // A worker process's first calls carry its cold start (HTTP client, classes, JIT): on this 2-core machine
                // up to ~300 ms between a permit and the call's arrival, more than the 100 ms guard, so the provider saw
                // the first window's calls bunched against the next window's (CI, session 15: 22 in a window, the
                // limiter's grants within the limit). Every worker runs a few calls first; the backlog measured is
                // what a running fleet sends.
                int warmUp = 0;
                for (int round = 0; round < 8 && fleet.count("SELECT count(DISTINCT worker_id) FROM execution_results") < 3; round++) {
                    fleet.submitBatch(KEY, "limited", 16, origin, i -> "warm-up " + i + " sleep=0.1");
                    warmUp += 16;
                    int done = warmUp;
                    await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200))
                            .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == done);
                }
                assertThat(fleet.count("SELECT count(DISTINCT worker_id) FROM execution_results")).as("workers warmed").isEqualTo(3);
                int warmCalls = server.requests().size();
                // The warm-up's permits leave the limiter's window (2 s + the guard) before the backlog is submitted, so
                // the backlog starts from an empty window, as the utilisation below assumes: a wait for time itself.
                await().pollDelay(Duration.ofMillis(2_200)).atMost(Duration.ofSeconds(5)).until(() -> true);

                int total = warmUp + jobs;
                fleet.submitBatch(KEY, "limited", jobs, origin, i -> "job " + i + " sleep=0.1");
                await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofSeconds(1))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == total);

                List<ScriptedModelServer.Request> requests = server.requests();
                List<Long> calls = new ArrayList<>(requests.subList(warmCalls, requests.size()).stream()
                        .map(ScriptedModelServer.Request::arrivedMicros).toList());
                calls.sort(null);
                assertThat(calls).hasSize(jobs);
                int max = maxInWindow(calls, windowMicros);
                StringBuilder trace = new StringBuilder();
                for (long c : calls) {
                    trace.append((c - calls.getFirst()) / 1000).append(' ');
                }
                System.out.println("call times, ms after the first: " + trace);
                // Utilisation: the rate at which the fleet called under a full backlog, against the limit's rate, over the
                // first k * limit calls (a whole number of windows' worth, so the draining tail does not count).
                int k = (jobs - 1) / limit;
                double utilisation = (double) (k * limit) / ((double) limit / windowMicros * (calls.get(k * limit) - calls.getFirst()));
                System.out.printf("rate-limit e2e: %d calls, max %d in any 2 s window (limit %d), utilisation %.1f %% "
                        + "(skewed worker under libfaketime: %s)%n", jobs, max, limit, utilisation * 100, faketime);
                assertThat(max).as("calls in any 2 s window").isLessThanOrEqualTo(limit);
                assertThat(utilisation).as("utilisation of the limit").isGreaterThanOrEqualTo(0.90);
                assertThat(fleet.count("SELECT count(*) FROM execution_results r JOIN tasks t ON t.id = r.task_id "
                        + "WHERE r.worker_id = 'rl-w3-skewed' AND t.description LIKE 'job %'"))
                        .as("the skewed worker took its share of the backlog").isPositive();
                assertThat(fleet.log("rl-w3-skewed")).contains("KAGE_CLOCK_OFFSET_MS=7000");
            }
        }
    }

    @Test
    void a429WithRetryAfterFromTheEndpointPausesEveryWorkerForThatLong() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.tooManyRequests(3)).otherwise(n -> Reply.ok("fine", 20, 4).after(Duration.ofMillis(30)));
            Path agents = agents("""
                    agents:
                      api:
                        type: openai-compatible
                        base_url: %s
                        model: scripted
                        limits: {requests: 1, window_seconds: 0.4, guard_ms: 0}
                    """.formatted(server.openAiBaseUrl()));
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "rate-limit-429"))) {
                fleet.startCoordinator(env(agents, Map.of()));
                fleet.awaitHealthy();
                fleet.startWorker("pause-w1", dir.resolve("work1"), origin, env(agents, Map.of("MAX_PARALLEL_CLIS", "4")));
                fleet.startWorker("pause-w2", dir.resolve("work2"), origin, env(agents, Map.of("MAX_PARALLEL_CLIS", "4")));
                fleet.awaitWorkers(2);
                fleet.submitBatch(KEY, "api", 8, origin, i -> "job " + i + " sleep=0.1");
                // The pause begins when a worker has the 429's answer (the cooldown key holds the Redis server's time
                // then, in ms; the endpoint stamps arrivals with this machine's clock, the same one), not when the
                // endpoint received the call: on a loaded machine the answer took 1.1 s to be handled, and the limit
                // (1 per 0.4 s) rightly let another job's call go in between. Polled every 20 ms; the pause lasts 3 s.
                String cooldown = fleet.redis.keys().cooldown("api");
                String pausedAt = await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(20))
                        .until(() -> fleet.redis.redis().get(cooldown), v -> v != null);
                long pausedFrom = Long.parseLong(pausedAt) * 1_000;
                await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(500))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 8);

                List<ScriptedModelServer.Request> requests = server.requests();
                assertThat(requests.getFirst().answeredStatus()).isEqualTo(429);
                long first = requests.getFirst().arrivedMicros();
                List<ScriptedModelServer.Request> before = requests.subList(1, requests.size()).stream()
                        .filter(r -> r.arrivedMicros() < pausedFrom).toList();
                System.out.printf("rate-limit 429: the pause began %d ms after the 429's call arrived; %d call(s) arrived "
                        + "in between%n", (pausedFrom - first) / 1_000, before.size());
                assertThat(before).as("calls granted before any worker had the 429: at most what 1 per 0.4 s allows")
                        .hasSizeLessThanOrEqualTo((int) ((pausedFrom - first) / 400_000) + 1);
                assertThat(requests.stream().filter(r -> r.arrivedMicros() >= pausedFrom).toList()).as("no call reaches the endpoint during the pause")
                        .allSatisfy(r -> assertThat(r.arrivedMicros() - pausedFrom).isGreaterThanOrEqualTo(3_000_000));
                assertThat(requests).hasSize(9);
                assertThat(fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'RateLimitError'")).isEqualTo(1);
                assertThat(fleet.log("pause-w1") + fleet.log("pause-w2")).contains("answered 429");
                assertThat(fleet.log("pause-w1")).as("worker 1 waited out the fleet-wide pause").contains("cooling down after a 429");
                assertThat(fleet.log("pause-w2")).as("worker 2 waited out the fleet-wide pause").contains("cooling down after a 429");
            }
        }
    }

    @Test
    void a429StormEndsWithEveryJobFinishedOrFailedAfterItsRetriesAndNoHotLoop() throws Exception {
        java.util.concurrent.atomic.AtomicLong stormEnds = new java.util.concurrent.atomic.AtomicLong(Long.MAX_VALUE);
        try (ScriptedModelServer server = ScriptedModelServer.start();
             RedisClient client = RedisClient.create(TestServices.redisUrl());
             StatefulRedisConnection<String, String> redis = client.connect()) {
            server.otherwise(n -> System.nanoTime() < stormEnds.get() ? Reply.tooManyRequests(1) : Reply.ok("after the storm", 9, 2));
            Path agents = agents("""
                    agents:
                      api:
                        type: openai-compatible
                        base_url: %s
                        model: scripted
                        limits: {requests: 50, window_seconds: 1}
                    """.formatted(server.openAiBaseUrl()));
            int jobs = 12;
            int retries = 3;
            Map<String, String> settings = Map.of("RATE_LIMIT_MAX_RETRIES", Integer.toString(retries), "RATE_LIMIT_BACKOFF_BASE", "0.5",
                    "RATE_LIMIT_BACKOFF_MAX", "2", "MAX_PARALLEL_CLIS", "6");
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "rate-limit-storm"))) {
                fleet.startCoordinator(env(agents, Map.of()));
                fleet.awaitHealthy();
                fleet.startWorker("storm-w1", dir.resolve("work1"), origin, env(agents, settings));
                fleet.startWorker("storm-w2", dir.resolve("work2"), origin, env(agents, settings));
                fleet.awaitWorkers(2);
                long commandsBefore = commands(redis);
                long started = System.nanoTime();
                stormEnds.set(started + Duration.ofSeconds(8).toNanos());
                fleet.submitBatch(KEY, "api", jobs, origin, i -> "job " + i + " sleep=0.1");
                await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(500))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed')") == jobs);
                double seconds = (System.nanoTime() - started) / 1e9;
                double commandsPerSecond = (commands(redis) - commandsBefore) / seconds;

                long failed = fleet.count("SELECT count(*) FROM tasks WHERE status = 'failed'");
                long finalRows = fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'RateLimitError' AND NOT retryable");
                System.out.printf("429 storm: %d jobs, %d failed after %d retries, %d requests to the endpoint, %.0f Redis commands/s "
                        + "over %.1f s%n", jobs, failed, retries, server.requests().size(), commandsPerSecond, seconds);
                assertThat(finalRows).as("each failed job has its final RateLimitError row").isEqualTo(failed);
                assertThat(server.requests().size()).as("at most one call per job per retry: no hot loop against the provider")
                        .isLessThanOrEqualTo(jobs * (retries + 1));
                assertThat(commandsPerSecond).as("Redis commands per second during the storm: no hot loop").isLessThan(3_000);
                assertThat(fleet.log("storm-w1") + fleet.log("storm-w2")).as("the storm lowered the fleet's rate")
                        .contains("effective rate lowered");

                // After the storm the fleet serves again.
                fleet.submitBatch(KEY, "api", 1, origin, i -> "job " + i + " sleep=0.1");
                await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(500))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed')") == jobs + 1);
                assertThat(fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'")).isGreaterThanOrEqualTo(1);
            }
        }
    }

    private static long commands(StatefulRedisConnection<String, String> redis) {
        for (String line : redis.sync().info("stats").split("\r?\n")) {
            if (line.startsWith("total_commands_processed:")) {
                return Long.parseLong(line.substring(line.indexOf(':') + 1).strip());
            }
        }
        throw new IllegalStateException("no total_commands_processed in INFO stats");
    }

    private Path agents(String yaml) throws Exception {
        Path file = dir.resolve("agents.yml");
        Files.writeString(file, yaml);
        return file;
    }

    private Map<String, String> env(Path agents, Map<String, String> extra) {
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents.toString());
        env.put("E2E_LOG_DIR", runs.toString());
        env.put("KAGE_PUSH_BRANCHES", "false");
        env.putAll(extra);
        return env;
    }



    /** The most timestamps (ms, sorted) in any half-open window [t, t + window). */
    static int maxInWindow(List<Long> sorted, long window) {
        int max = 0;
        int from = 0;
        for (int to = 0; to < sorted.size(); to++) {
            while (sorted.get(to) - sorted.get(from) >= window) {
                from++;
            }
            max = Math.max(max, to - from + 1);
        }
        return max;
    }
}
