package dev.kage.e2e.chaos;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.e2e.Fleet;
import dev.kage.testing.PrivateRedis;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.StatefulRedisConnection;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chaos scenario 2, Redis restart: a coordinator and three workers on a private {@code redis-server} with an AOF
 * fsynced every second ({@code appendonly yes, appendfsync everysec}); jobs are submitted at a steady rate through the
 * API while Redis is restarted every {@code restart_every_seconds}, in turn:
 * <ul>
 *   <li>{@code kill}: SIGKILL of the server process, as a crash or an OOM kill;</li>
 *   <li>{@code power-loss}: the AOF as it was on disk one second before a SIGKILL — what {@code everysec} may lose
 *       when the machine itself dies (a process kill keeps what Redis had written to the file, since Redis writes
 *       the AOF before it answers; the page cache survives the process but not the machine);</li>
 *   <li>{@code shutdown}: SIGTERM, a clean shutdown that flushes the AOF.</li>
 * </ul>
 * A canary writes an increasing counter to the same Redis every few milliseconds; what it had confirmed and is missing
 * after the restart is the measured loss window. Before a power loss a batch is submitted, so jobs the API accepted
 * are always among what is lost. The fleet must resume by itself within 10 s of Redis answering (the new server's first
 * {@code XACK}: a job finished and acknowledged), every task must end {@code completed} with its result (jobs Redis
 * lost are enqueued again by the coordinator's reconciler), no job may run on two workers at once, no process may
 * die, and nothing but 503 may be a 5xx.
 *
 * <p>Scale (see {@link Chaos}): {@code jobs} 60 (ci) / 400 (full), {@code restart_every_seconds} 8 / 20; at least one
 * restart of each kind, more while jobs are still being submitted (4 a second).
 */
class RedisRestartChaosIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final int WORKERS = 3;
    private static final int SLOTS = 4;
    private static final double JOB_SECONDS = 1;
    private static final int SUBMIT_PER_SECOND = 4;
    private static final Duration RESUME_WITHIN = Duration.ofSeconds(10);
    private static final List<String> MODES = List.of("kill", "power-loss", "shutdown");

    @TempDir
    Path dir;

    /** One restart: how it was done, what it lost, how fast the fleet came back. */
    private record Restart(String mode, long downMs, long canaryLost, long lossWindowMs, long windowTasks, long claimMs,
                           long resumeMs) {
        String describe() {
            return mode + "{down=" + downMs + "ms,canary_lost=" + canaryLost + ",loss_window=" + lossWindowMs + "ms"
                    + (mode.equals("power-loss") ? ",tasks_accepted_in_window=" + windowTasks : "") + ",claiming_after="
                    + (claimMs < 0 ? "never" : claimMs + "ms") + ",first_ack_after=" + (resumeMs < 0 ? "never" : resumeMs + "ms") + "}";
        }
    }

    @Test
    void theFleetResumesByItselfAfterRedisRestartsAndLosesNoJob() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        Assumptions.assumeTrue(Chaos.longAsked(), "a long scenario: ops/chaos/run.sh runs it (kage.chaos.long=true), ./mvnw verify does not");
        int jobs = Chaos.intSetting("jobs", 60, 400);
        int restartEvery = Chaos.intSetting("restart_every_seconds", 8, 20);
        Path origin = Chaos.createRepo(dir.resolve("origin"));
        Path runs = Files.createDirectories(dir.resolve("runs"));
        Path runsLog = runs.resolve("runs.log");
        Path agents = Chaos.recordingAgents(dir.resolve("agents.yml"), "rec");
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.AOF_EVERYSEC);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "chaos-redis-restart"));
             RedisClient client = RedisClient.create(redis.url())) {
            Map<String, String> env = new HashMap<>();
            env.put("KAGE_AGENTS_FILE", agents.toString());
            env.put("E2E_LOG_DIR", runs.toString());
            env.put("REDIS_URL", redis.url());
            env.put("KAGE_RECLAIM_IDLE_SECONDS", "15");
            env.put("MAX_REQUESTS_PER_MINUTE", "1000000");
            env.put("KAGE_PUSH_BRANCHES", "false");
            Map<String, String> workerEnv = new HashMap<>(env);
            workerEnv.put("MAX_PARALLEL_CLIS", Integer.toString(SLOTS));
            Api api = new Api(fleet.port);
            long began = System.nanoTime();
            List<Process> processes = new ArrayList<>();
            processes.add(fleet.startCoordinator(env));
            fleet.awaitHealthy(); // first, so four JVMs do not start at once on a small machine
            for (int w = 0; w < WORKERS; w++) {
                processes.add(fleet.startWorker("redis-w" + w, dir.resolve("work"), origin, workerEnv));
            }
            fleet.awaitHealthy();
            String workerKeys = fleet.redis.namespace() + ":worker:*";
            await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(300)).until(() -> {
                try (StatefulRedisConnection<String, String> c = client.connect()) {
                    return c.sync().keys(workerKeys).size() >= WORKERS;
                }
            });

            // The submitter: a batch every half second until every job is accepted; answers filed as during/outside.
            AtomicBoolean redisDown = new AtomicBoolean(false);
            AtomicLong recoveringUntil = new AtomicLong(0);
            Api outage = new Api(fleet.port);
            AtomicLong submitted = new AtomicLong();
            Thread submitter = Thread.ofPlatform().name("chaos-submitter").start(() -> {
                int perBatch = SUBMIT_PER_SECOND / 2;
                while (submitted.get() < jobs) {
                    int count = (int) Math.min(perBatch, jobs - submitted.get());
                    ObjectNode body = JSON.createObjectNode();
                    var tasks = body.putArray("tasks");
                    for (int i = 0; i < count; i++) {
                        long n = submitted.get() + i;
                        tasks.addObject().put("description", "restart job " + n + " sleep=" + JOB_SECONDS).put("repo", origin.toString())
                                .putArray("cli_assignments").addObject().put("cli_name", "rec").put("timeout", 120);
                    }
                    try {
                        boolean fault = redisDown.get() || System.nanoTime() < recoveringUntil.get();
                        Api.Answer answer = (fault ? outage : api).post("submit", "/api/v1/tasks:batch", KEY, body.toString());
                        if (answer.status() == 202) {
                            submitted.addAndGet(count);
                        }
                        // pacing: a steady submit rate, as a client would keep up
                        Thread.sleep(500);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            });

            // The canary: an increasing counter on the same Redis, and the last value Redis confirmed.
            String canaryKey = fleet.redis.namespace() + ":chaos:canary";
            AtomicLong confirmed = new AtomicLong();
            Map<Long, Long> confirmedAt = new java.util.concurrent.ConcurrentHashMap<>();
            AtomicBoolean canaryOn = new AtomicBoolean(true);
            AtomicBoolean canaryHeld = new AtomicBoolean(false);
            Thread canary = Thread.ofPlatform().name("chaos-canary").start(() -> {
                StatefulRedisConnection<String, String> c = null;
                while (canaryOn.get()) {
                    try {
                        if (c == null) {
                            c = client.connect();
                            c.setTimeout(Duration.ofSeconds(1));
                        }
                        if (canaryHeld.get()) {
                            // held while Redis restarts, until its value is read
                            Thread.sleep(5);
                            continue;
                        }
                        long value = c.sync().incr(canaryKey);
                        confirmed.accumulateAndGet(value, Math::max);
                        confirmedAt.put(value, System.currentTimeMillis());
                    } catch (InterruptedException e) {
                        return;
                    } catch (RedisException e) {
                        if (c != null) {
                            c.closeAsync();
                            c = null;
                        }
                    }
                    try {
                        // pacing: a few hundred writes a second is enough to time the loss window to ~5 ms
                        Thread.sleep(5);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
                if (c != null) {
                    c.close();
                }
            });

            List<Restart> restarts = new ArrayList<>();
            long deadline = System.nanoTime() + Duration.ofSeconds(120 + (long) (jobs / (SUBMIT_PER_SECOND * 0.8))).toNanos();
            int round = 0;
            try {
                while (System.nanoTime() < deadline && (submitted.get() < jobs || round < MODES.size())) {
                    await().pollDelay(Duration.ofSeconds(restartEvery - 1)).atMost(Duration.ofSeconds(restartEvery + 5)).until(() -> true);
                    String mode = MODES.get(round++ % MODES.size());
                    Path snapshot = null;
                    if (mode.equals("power-loss")) {
                        snapshot = copyAof(redis.dir(), dir.resolve("aof-snapshot-" + round));
                    }
                    long windowTasks = 0;
                    if (snapshot != null) {
                        // Tasks accepted after the snapshot: a power loss now would lose their jobs from Redis.
                        long before = fleet.count("SELECT count(*) FROM tasks");
                        submitMarkers(api, origin, 5);
                        windowTasks = fleet.count("SELECT count(*) FROM tasks") - before;
                    }
                    await().pollDelay(Duration.ofMillis(snapshot != null ? 800 : 1000)).atMost(Duration.ofSeconds(5)).until(() -> true);
                    if (fleet.count("SELECT count(*) FROM tasks WHERE status IN ('queued', 'running')") < 3) {
                        // The backlog ran out (a last round after the submitter's end): the resumption is measured by
                        // the first XACK after the restart, so give the fleet jobs to run through it.
                        submitMarkers(api, origin, 3);
                    }
                    long confirmedBefore = confirmed.get();
                    long downAt = System.currentTimeMillis();
                    canaryHeld.set(true);
                    redisDown.set(true);
                    switch (mode) {
                        case "shutdown" -> redis.stop();
                        default -> redis.kill();
                    }
                    long lastConfirmed = confirmed.get();
                    if (snapshot != null) {
                        restoreAof(snapshot, redis.dir());
                    }
                    redis.restart();
                    long upAt = System.currentTimeMillis();
                    redisDown.set(false);
                    recoveringUntil.set(System.nanoTime() + RESUME_WITHIN.toNanos());
                    long after;
                    try (StatefulRedisConnection<String, String> c = client.connect()) {
                        String value = c.sync().get(canaryKey);
                        after = value == null ? 0 : Long.parseLong(value);
                    }
                    canaryHeld.set(false);
                    long lost = Math.max(0, lastConfirmed - after);
                    // The writes lost span from the first lost value's confirmation to the last confirmed one's.
                    long window = lost == 0 ? 0 : confirmedAt.getOrDefault(lastConfirmed, downAt) - confirmedAt.getOrDefault(after + 1, downAt);
                    // Resumed: the new server's first XREADGROUP (a claim loop reading again) and first XACK (a job
                    // finished and acknowledged: the fleet makes progress), from its own command counters.
                    long claimAt = -1;
                    long ackAt = -1;
                    try (StatefulRedisConnection<String, String> c = client.connect()) {
                        long resumeDeadline = System.currentTimeMillis() + 30_000;
                        while ((ackAt < 0 || claimAt < 0) && System.currentTimeMillis() < resumeDeadline) {
                            String stats = c.sync().info("commandstats");
                            long now = System.currentTimeMillis();
                            if (claimAt < 0 && stats.contains("cmdstat_xreadgroup:")) {
                                claimAt = now;
                            }
                            if (ackAt < 0 && stats.contains("cmdstat_xack:")) {
                                ackAt = now;
                            }
                            await().pollDelay(Duration.ofMillis(20)).until(() -> true);
                        }
                    }
                    restarts.add(new Restart(mode, upAt - downAt, lost, Math.max(0, window), windowTasks,
                            claimAt < 0 ? -1 : claimAt - upAt, ackAt < 0 ? -1 : ackAt - upAt));
                    System.out.println("redis-restart: " + restarts.getLast().describe() + " (canary confirmed " + confirmedBefore
                            + " before, " + lastConfirmed + " at the kill, " + after + " after)");
                }
                submitter.join(Duration.ofSeconds(60));
            } finally {
                submitter.interrupt();
            }

            // Every task the fleet has, whatever the API answered, must end.
            long endBy = System.nanoTime() + Duration.ofSeconds(150).toNanos();
            await().atMost(Duration.ofNanos(Math.max(1, endBy - System.nanoTime()))).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status NOT IN ('completed', 'partial', 'failed', 'cancelled')") == 0
                            || System.nanoTime() > endBy - Duration.ofSeconds(1).toNanos());
            canaryOn.set(false);
            canary.join(Duration.ofSeconds(10));
            long took = Duration.ofNanos(System.nanoTime() - began).toSeconds();

            long tasks = fleet.count("SELECT count(*) FROM tasks");
            Map<String, Long> byStatus = fleet.query("SELECT status, count(*) FROM tasks GROUP BY status").stream()
                    .collect(Collectors.toMap(r -> r.split(":")[0], r -> Long.parseLong(r.split(":")[1])));
            long withResult = fleet.count("""
                    SELECT count(*) FROM tasks t WHERE t.status = 'completed'
                    AND EXISTS (SELECT 1 FROM execution_results r WHERE r.task_id = t.id AND r.status = 'completed')""");
            List<String> stuck = fleet.query("""
                    SELECT id, status, enqueued_at IS NOT NULL FROM tasks
                    WHERE status NOT IN ('completed', 'partial', 'failed', 'cancelled') ORDER BY created_at LIMIT 5""");
            long lost = tasks - withResult;
            List<String> overlaps = Chaos.overlaps(runsLog);
            Map<String, Long> startsPerJob = Chaos.runLines(runsLog, "start ").stream()
                    .collect(Collectors.groupingBy(l -> l.split(" ")[1], Collectors.counting()));
            long reruns = startsPerJob.values().stream().filter(n -> n > 1).count();
            long died = processes.stream().filter(p -> !p.isAlive()).count();
            long serverErrors = api.serverErrors();
            long serverErrorsBut503 = api.serverErrorsBut503() + outage.serverErrorsBut503();
            long resumedLate = restarts.stream().filter(r -> r.resumeMs() < 0 || r.resumeMs() > RESUME_WITHIN.toMillis()).count();
            long reenqueued = 0;
            for (int w = -1; w < WORKERS; w++) {
                String log = fleet.log(w < 0 ? "coordinator" : "redis-w" + w);
                reenqueued += log.lines().filter(l -> l.contains("missing from Redis")).count();
            }
            boolean pass = lost == 0 && overlaps.isEmpty() && tasks >= jobs && byStatus.getOrDefault("completed", 0L) == tasks
                    && died == 0 && serverErrors == 0 && serverErrorsBut503 == 0 && resumedLate == 0 && restarts.size() >= MODES.size();
            Chaos.report("redis-restart", String.format(
                    "jobs=%d workers=%d restarts=%d [%s] lost=%d duplicated=%d reruns=%d reenqueued_after_loss=%d final=%s "
                            + "processes_died=%d 5xx=%d (outage %s) took=%ds",
                    tasks, WORKERS, restarts.size(), restarts.stream().map(Restart::describe).collect(Collectors.joining(" ")),
                    lost, overlaps.size(), reruns, reenqueued, byStatus.toString().replace(" ", ""), died, serverErrors,
                    outage.summary().isEmpty() ? "-" : outage.summary(), took), pass);

            assertThat(restarts).as("restarts done").hasSizeGreaterThanOrEqualTo(MODES.size());
            assertThat(overlaps).as("no job ran on two workers at once").isEmpty();
            assertThat(stuck).as("tasks that never ended (id:status:enqueued)").isEmpty();
            assertThat(lost).as("tasks without a completed result").isZero();
            assertThat(tasks).as("tasks accepted").isGreaterThanOrEqualTo(jobs);
            assertThat(died).as("processes that died").isZero();
            assertThat(serverErrors).as("5xx outside a restart and its 10 s: " + api.summary()).isZero();
            assertThat(serverErrorsBut503).as("5xx other than 503 during a restart: " + outage.summary()).isZero();
            assertThat(restarts).as("the fleet resumed within " + RESUME_WITHIN.toSeconds() + " s of every restart")
                    .allSatisfy(r -> assertThat(r.resumeMs()).isBetween(0L, RESUME_WITHIN.toMillis()));
        }
    }

    /** Submits {@code count} tasks in one batch and waits for the answer. */
    private static void submitMarkers(Api api, Path origin, int count) throws InterruptedException {
        ObjectNode body = JSON.createObjectNode();
        var tasks = body.putArray("tasks");
        for (int i = 0; i < count; i++) {
            tasks.addObject().put("description", "in the loss window " + i + " sleep=" + JOB_SECONDS).put("repo", origin.toString())
                    .putArray("cli_assignments").addObject().put("cli_name", "rec").put("timeout", 120);
        }
        Api.Answer answer = api.post("submit", "/api/v1/tasks:batch", KEY, body.toString());
        assertThat(answer.status()).as(answer.body()).isEqualTo(202);
    }

    /** A copy of the server's AOF files as they are on disk now (Redis 7 keeps them in {@code appendonlydir}). */
    private static Path copyAof(Path redisDir, Path to) throws IOException {
        Path from = redisDir.resolve("appendonlydir");
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from)) {
            for (Path file : files.toList()) {
                Files.copy(file, to.resolve(file.getFileName()), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        return to;
    }

    /** Puts a copy back in place of the server's AOF files (the server is down). */
    private static void restoreAof(Path snapshot, Path redisDir) throws IOException {
        Path aof = redisDir.resolve("appendonlydir");
        try (Stream<Path> files = Files.walk(aof)) {
            files.sorted(Comparator.reverseOrder()).filter(p -> !p.equals(aof)).forEach(p -> p.toFile().delete());
        }
        try (Stream<Path> files = Files.list(snapshot)) {
            for (Path file : files.toList()) {
                Files.copy(file, aof.resolve(file.getFileName()), StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }
}
