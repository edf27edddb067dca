package dev.kage.e2e.chaos;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.e2e.Fleet;
import io.lettuce.core.KeyScanCursor;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanCursor;
import io.lettuce.core.api.sync.RedisCommands;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIf;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chaos scenario 7, soak: half an hour of mixed load on the coordinator and three workers — a single submit every 5 s
 * and a batch of four every 20 s (24 tasks a minute) of short jobs for two agents at three priorities (every fifth
 * fails on purpose, every tenth is for both agents), a cancel every 10 s, reads of tasks and queues every 3 s, an event
 * stream (SSE) read throughout and reconnected every minute — while a random worker is killed with SIGKILL every
 * minute and started again. Every {@code soak_sample_seconds}, beside the load, it samples the coordinator's and the
 * longest-lived worker's heap after a full GC ({@code jcmd GC.run}, then {@code GC.heap_info}), the fleet's Redis keys
 * (with and without TTL, and the memory of those without), every stream's length less its entries not yet
 * acknowledged, the rows of every Postgres table, the open budget reservations (holds) and the server's
 * {@code used_memory} (the Redis is shared, so that one is for the record only). The samples are written to
 * {@code target/chaos/soak-samples.txt}.
 *
 * <p>Passes when what must stay bounded does: the second half's largest heap after GC (coordinator; the longest-lived
 * worker) is at most 25% (+ 8 MiB) above the first half's; keys without a TTL do not grow in the second half (at most
 * 5 more than the first half's largest count: streams, groups and settings are few and fixed); the acknowledged
 * entries each job stream keeps stay within {@code KAGE_STREAM_KEEP_ACKED} (50 here, so trimming is exercised) + 100,
 * the event stream within its 10,000 (+ 200); rows per ended task at the end are at most the first half's (+25%,
 * +0.1); no reservation (hold, or tokens reserved in a pool) is left once every task ended; and nothing is lost (every
 * task final), duplicated (ran twice at once) or answered 5xx. Keys with a TTL (a task's live state, its enqueue-once
 * marks, its budget pool: 7 days) are counted per task and grow with the tasks until they expire, by design.
 *
 * <p>Not run by {@code ./mvnw verify}: only when {@code kage.chaos.soak=true} ({@code ops/chaos/run.sh soak} sets it).
 * {@code KAGE_CHAOS_SOAK_MINUTES} [30], {@code KAGE_CHAOS_SOAK_KILL_EVERY_SECONDS} [60],
 * {@code KAGE_CHAOS_SOAK_SAMPLE_SECONDS} [30]. It runs copies of the jars taken at its start, so a build during the
 * half hour does not change the code under it.
 */
@EnabledIf("soakAsked")
class SoakChaosIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final int WORKERS = 3;
    private static final int KEEP_ACKED = 50;
    private static final int MAX_EVENTS = 10_000;
    private static final List<String> AGENTS = List.of("rec-a", "rec-b");
    private static final List<String> PRIORITIES = List.of("low", "normal", "high");
    private static final Pattern HEAP_USED = Pattern.compile("used (\\d+)K");

    @TempDir
    Path dir;

    static boolean soakAsked() {
        return "true".equals(System.getProperty("kage.chaos.soak", System.getenv("KAGE_CHAOS_SOAK")));
    }

    /** One sample: when (seconds from the start) and what was measured. */
    record Sample(long at, long tasks, long endedTasks, long coordinatorHeapKb, long workerHeapKb, long keysWithTtl, long keysWithoutTtl,
                  long bytesWithoutTtl, Map<String, Long> streams, Map<String, Long> rows, long holds, long serverUsedMemory) {
    }

    @Test
    void halfAnHourOfMixedLoadWithWorkerKillsKeepsEverythingBounded() throws Exception {
        int minutes = intSetting("soak_minutes", 30);
        int killEvery = intSetting("soak_kill_every_seconds", 60);
        int sampleEvery = intSetting("soak_sample_seconds", 30);
        long seed = System.nanoTime();
        Random random = new Random(seed);
        Path coordinatorJar = Files.copy(Fleet.COORDINATOR_JAR, dir.resolve("kage-coordinator.jar"));
        Path workerJar = Files.copy(Fleet.WORKER_JAR, dir.resolve("kage-worker.jar"), StandardCopyOption.REPLACE_EXISTING);
        Path origin = Chaos.createRepo(dir.resolve("origin"));
        Path runs = Files.createDirectories(dir.resolve("runs"));
        Files.writeString(runs.resolve("fail"), "on"); // "fail=3" in a description makes its run exit 3 (not retried)
        Path agents = Chaos.recordingAgents(dir.resolve("agents.yml"), AGENTS.toArray(String[]::new));
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents.toString());
        env.put("E2E_LOG_DIR", runs.toString());
        env.put("KAGE_RECLAIM_IDLE_SECONDS", "15");
        env.put("MAX_REQUESTS_PER_MINUTE", "1000000");
        env.put("KAGE_STREAM_KEEP_ACKED", Integer.toString(KEEP_ACKED));
        // A dead worker's hold lapses after the job's timeout (60 s) and this grace (default 600 s): shortened so the
        // holds of the last killed workers are gone within the wait at the end.
        env.put("BUDGET_HOLD_GRACE_SECONDS", "60");
        Map<String, String> workerEnv = new HashMap<>(env);
        workerEnv.put("MAX_PARALLEL_CLIS", "4");

        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "chaos-soak"))) {
            Api api = new Api(fleet.port);
            long began = System.nanoTime();
            Map<String, String> coordinatorEnv = fleet.baseEnvironment();
            coordinatorEnv.put("PORT", Integer.toString(fleet.port));
            coordinatorEnv.put("KAGE_DEV_MODE", "true");
            coordinatorEnv.putAll(env);
            Process coordinator = fleet.start("coordinator", coordinatorJar, coordinatorEnv);
            Process[] workers = new Process[WORKERS];
            long[] startedAt = new long[WORKERS];
            int generation = 0;
            for (int w = 0; w < WORKERS; w++) {
                workers[w] = startWorker(fleet, "soak-w" + w + "-0", "soak-w" + w, origin, workerEnv, workerJar);
                startedAt[w] = System.nanoTime();
            }
            // Up to 5 minutes to start (Fleet waits 90 s): on a shared 2-core machine four JVMs starting at once can take longer.
            await().atMost(Duration.ofMinutes(5)).pollInterval(Duration.ofSeconds(1)).ignoreExceptions().until(() ->
                    fleet.get("/health", null).statusCode() == 200
                            && fleet.redis.redis().keys(fleet.redis.namespace() + ":worker:*").size() >= WORKERS);

            AtomicBoolean running = new AtomicBoolean(true);
            AtomicLong eventsSeen = new AtomicLong();
            AtomicLong streamsOpened = new AtomicLong();
            Thread events = Thread.ofVirtual().start(() -> readEvents(fleet.port, running, eventsSeen, streamsOpened));

            List<String> taskIds = new ArrayList<>();
            List<Sample> samples = java.util.Collections.synchronizedList(new ArrayList<>());
            long loadBegan = System.nanoTime();
            long end = loadBegan + Duration.ofMinutes(minutes).toNanos();
            // The sampler runs beside the load (a sample takes seconds: four jcmd calls and a walk over the keys).
            java.util.concurrent.ScheduledExecutorService sampler = java.util.concurrent.Executors.newSingleThreadScheduledExecutor();
            sampler.scheduleAtFixedRate(() -> {
                try {
                    Process[] now;
                    long[] since;
                    synchronized (workers) {
                        now = workers.clone();
                        since = startedAt.clone();
                    }
                    samples.add(sample(fleet, coordinator, now, since, loadBegan));
                } catch (Exception e) {
                    System.out.println("soak: a sample failed: " + e);
                }
            }, 0, sampleEvery, TimeUnit.SECONDS);
            long nextKill = System.nanoTime() + Duration.ofSeconds(killEvery).toNanos();
            int kills = 0;
            int cancels = 0;
            int tick = 0;
            while (System.nanoTime() < end) {
                long tickStart = System.nanoTime();
                tick++;
                if (tick % 5 == 0) {
                    submit(api, taskIds, random, tick);
                }
                if (tick % 20 == 0) {
                    submitBatch(api, taskIds, random, tick);
                }
                if (tick % 10 == 0 && taskIds.size() > 20) {
                    String victim = taskIds.get(taskIds.size() - 1 - random.nextInt(20));
                    api.post("cancel", "/api/v1/tasks/" + victim + "/cancel", KEY, "");
                    cancels++;
                }
                if (tick % 3 == 0 && !taskIds.isEmpty()) {
                    api.get("task", "/api/v1/tasks/" + taskIds.get(random.nextInt(taskIds.size())), KEY);
                    api.get("queues", "/api/v1/queues", KEY);
                }
                if (System.nanoTime() >= nextKill) {
                    int victim = random.nextInt(WORKERS);
                    workers[victim].destroyForcibly(); // SIGKILL: no shutdown hook, no hand-back
                    assertThat(workers[victim].waitFor(10, TimeUnit.SECONDS)).isTrue();
                    kills++;
                    String id = random.nextBoolean() ? "soak-w" + victim : "soak-w" + victim + "-g" + (++generation);
                    Process started = startWorker(fleet, id + "-" + kills, id, origin, workerEnv, workerJar);
                    synchronized (workers) {
                        workers[victim] = started;
                        startedAt[victim] = System.nanoTime();
                    }
                    nextKill += Duration.ofSeconds(killEvery).toNanos();
                }
                long rest = Duration.ofSeconds(1).toNanos() - (System.nanoTime() - tickStart);
                if (rest > 0) {
                    // paces the load: one tick a second
                    Thread.sleep(Duration.ofNanos(rest));
                }
            }
            running.set(false);
            events.interrupt();
            sampler.shutdown();
            sampler.awaitTermination(2, TimeUnit.MINUTES);

            // Every task ends: each job runs well under a second, so a minute and a half is plenty with reclaims.
            waitUntil(Duration.ofSeconds(150), () -> finalTasks(fleet) >= taskIds.size());
            // Holds are released as their jobs end; give the last ones a moment (a dead worker's hold lapses by expiry).
            long holdsAtLoadEnd = holds(fleet);
            waitUntil(Duration.ofSeconds(240), () -> holds(fleet) == 0);
            waitUntil(Duration.ofSeconds(30), () -> reservedTokens(fleet) == 0);
            long reservedEnd = reservedTokens(fleet);
            Sample last = sample(fleet, coordinator, workers, startedAt, loadBegan);
            samples.add(last);
            long took = Duration.ofNanos(System.nanoTime() - began).toSeconds();

            // The verdicts.
            int half = samples.size() / 2;
            List<Sample> first = samples.subList(1, Math.max(2, half)); // the first sample is of an idle fleet
            List<Sample> second = samples.subList(half, samples.size());
            long coordFirst = max(first, Sample::coordinatorHeapKb);
            long coordSecond = max(second, Sample::coordinatorHeapKb);
            long workerFirst = max(first, Sample::workerHeapKb);
            long workerSecond = max(second, Sample::workerHeapKb);
            boolean heapBounded = coordSecond <= coordFirst * 1.25 + 8192 && workerSecond <= workerFirst * 1.25 + 8192;
            long noTtlFirst = max(first, Sample::keysWithoutTtl);
            long noTtlSecond = max(second, Sample::keysWithoutTtl);
            boolean keysBounded = noTtlSecond <= noTtlFirst + 5;
            long maxJobStream = 0;
            long maxEvents = 0;
            for (Sample s : samples) {
                for (Map.Entry<String, Long> e : s.streams().entrySet()) {
                    if (e.getKey().endsWith(":events")) {
                        maxEvents = Math.max(maxEvents, e.getValue());
                    } else if (e.getKey().contains(":jobs:")) {
                        maxJobStream = Math.max(maxJobStream, e.getValue());
                    }
                }
            }
            // Streams are sampled as their length less the entries not yet acknowledged (trimming keeps those by design).
            boolean streamsTrimmed = maxJobStream <= KEEP_ACKED + 100 && maxEvents <= MAX_EVENTS + 200;
            // Rows per ended task: at the end (every task ended) no more than in the first half (+25%, +0.1).
            StringBuilder rowGrowth = new StringBuilder();
            boolean rowsProportional = true;
            for (Map.Entry<String, Long> table : new TreeMap<>(last.rows()).entrySet()) {
                double firstPerTask = first.stream().mapToDouble(x -> (double) x.rows().getOrDefault(table.getKey(), 0L)
                        / Math.max(1, x.endedTasks())).max().orElse(0);
                double endPerTask = (double) table.getValue() / Math.max(1, last.endedTasks());
                rowsProportional &= endPerTask <= firstPerTask * 1.25 + 0.1;
                rowGrowth.append(rowGrowth.isEmpty() ? "" : ",").append(table.getKey()).append('=').append(table.getValue())
                        .append(String.format(Locale.ROOT, "(%.2f/task,1st_half_max=%.2f)", endPerTask, firstPerTask));
            }
            long notFinal = taskIds.size() - finalTasks(fleet);
            List<String> overlaps = Chaos.overlaps(runs.resolve("runs.log"));
            Map<String, Long> byStatus = new TreeMap<>();
            for (String row : fleet.query("SELECT status, count(*) FROM tasks GROUP BY status")) {
                String[] parts = row.split(":");
                byStatus.put(parts[0], Long.parseLong(parts[1]));
            }
            long serverErrors = api.serverErrors();
            boolean pass = heapBounded && keysBounded && streamsTrimmed && rowsProportional && last.holds() == 0 && reservedEnd == 0
                    && notFinal == 0 && overlaps.isEmpty() && serverErrors == 0 && kills > 0 && eventsSeen.get() > 0
                    && coordinator.isAlive();
            List<String> table = new ArrayList<>();
            table.add("at_s tasks ended coord_heap_kb worker_heap_kb keys_ttl keys_no_ttl bytes_no_ttl holds redis_used_memory streams rows");
            for (Sample s : samples) {
                table.add(String.format(Locale.ROOT, "%d %d %d %d %d %d %d %d %d %d %s %s", s.at(), s.tasks(), s.endedTasks(), s.coordinatorHeapKb(),
                        s.workerHeapKb(), s.keysWithTtl(), s.keysWithoutTtl(), s.bytesWithoutTtl(), s.holds(), s.serverUsedMemory(),
                        shortNames(s.streams(), fleet.redis.namespace()), s.rows().toString().replace(" ", "")));
            }
            Files.write(Files.createDirectories(Chaos.resultsDir()).resolve("soak-samples.txt"), table);
            Chaos.report("soak", String.format(Locale.ROOT,
                    "minutes=%d tasks=%d %s workers=%d kills=%d (every %ds, seed %d) cancels=%d events_read=%d (%d streams) "
                            + "samples=%d heap_after_gc_mb coordinator=%.0f->%.0f worker=%.0f->%.0f (1st->2nd half max) "
                            + "keys_no_ttl=%d->%d bytes_no_ttl_max=%d keys_with_ttl_end=%d (%.1f/task) stream_max(acknowledged_kept) jobs=%d/%d events=%d/%d "
                            + "rows[%s] holds_when_load_ended=%d holds_end=%d reserved_tokens_end=%d lost=%d duplicated=%d 5xx=%d api_calls=%d took=%ds",
                    minutes, taskIds.size(), byStatus.toString().replace(" ", ""), WORKERS, kills, killEvery, seed, cancels,
                    eventsSeen.get(), streamsOpened.get(), samples.size(), coordFirst / 1024.0, coordSecond / 1024.0,
                    workerFirst / 1024.0, workerSecond / 1024.0, noTtlFirst, noTtlSecond, max(samples, Sample::bytesWithoutTtl),
                    last.keysWithTtl(), taskIds.isEmpty() ? 0.0 : (double) last.keysWithTtl() / taskIds.size(), maxJobStream,
                    KEEP_ACKED + 100, maxEvents, MAX_EVENTS + 200, rowGrowth, holdsAtLoadEnd, last.holds(), reservedEnd, notFinal, overlaps.size(),
                    serverErrors, api.calls(), took), pass);

            assertThat(coordinator.isAlive()).as("the coordinator is alive").isTrue();
            assertThat(notFinal).as("tasks that never ended").isZero();
            assertThat(overlaps).as("no job ran on two workers at once").isEmpty();
            assertThat(serverErrors).as("5xx answers: " + api.summary()).isZero();
            assertThat(heapBounded).as("heap after GC bounded (coordinator %d->%d KiB, worker %d->%d KiB)", coordFirst,
                    coordSecond, workerFirst, workerSecond).isTrue();
            assertThat(keysBounded).as("keys without a TTL bounded (%d->%d)", noTtlFirst, noTtlSecond).isTrue();
            assertThat(streamsTrimmed).as("streams trimmed (jobs %d, events %d)", maxJobStream, maxEvents).isTrue();
            assertThat(rowsProportional).as("rows grow in proportion to tasks: " + rowGrowth).isTrue();
            assertThat(last.holds()).as("budget reservations left").isZero();
            assertThat(reservedEnd).as("tokens left reserved in the pools").isZero();
            assertThat(eventsSeen.get()).as("events read from the stream").isPositive();
        }
    }

    /** Polls {@code done} every 2 s for up to {@code most}; the verdicts below say what was not reached. */
    private static void waitUntil(Duration most, java.util.concurrent.Callable<Boolean> done) throws Exception {
        try {
            await().atMost(most).pollInterval(Duration.ofSeconds(2)).until(done);
        } catch (org.awaitility.core.ConditionTimeoutException notReached) {
            // reported (and asserted) below with the figures
        }
    }

    private static Process startWorker(Fleet fleet, String logName, String id, Path origin, Map<String, String> extra, Path jar)
            throws java.io.IOException {
        Map<String, String> env = fleet.baseEnvironment();
        env.put("KAGE_WORKER_ID", id);
        env.put("KAGE_WORK_DIR", origin.resolveSibling("work").toString());
        env.put("KAGE_DEFAULT_REPO", origin.toString());
        env.putAll(extra);
        return fleet.start(logName, jar, env);
    }

    private static void submit(Api api, List<String> taskIds, Random random, int tick) throws Exception {
        ObjectNode body = task(random, tick, 0);
        Api.Answer answer = api.post("submit", "/api/v1/tasks", KEY, body.toString());
        if (answer.status() == 202) {
            taskIds.add(JSON.readTree(answer.body()).get("task_id").asText());
        }
    }

    private static void submitBatch(Api api, List<String> taskIds, Random random, int tick) throws Exception {
        ObjectNode body = JSON.createObjectNode();
        var tasks = body.putArray("tasks");
        for (int i = 1; i <= 4; i++) {
            tasks.add(task(random, tick, i));
        }
        Api.Answer answer = api.post("batch", "/api/v1/tasks:batch", KEY, body.toString());
        if (answer.status() == 202) {
            JSON.readTree(answer.body()).get("tasks").forEach(t -> taskIds.add(t.get("task_id").asText()));
        }
    }

    /** A short job: for one agent or both, at a random priority; every fifth fails on purpose (exit 3). */
    private static ObjectNode task(Random random, int tick, int i) {
        boolean fail = random.nextInt(5) == 0;
        ObjectNode task = JSON.createObjectNode()
                .put("description", "soak " + tick + "." + i + " sleep=0." + (1 + random.nextInt(4)) + (fail ? " fail=3" : ""))
                .put("priority", PRIORITIES.get(random.nextInt(PRIORITIES.size())));
        var assignments = task.putArray("cli_assignments");
        if (random.nextInt(10) == 0) {
            AGENTS.forEach(a -> assignments.addObject().put("cli_name", a).put("timeout", 60));
        } else {
            assignments.addObject().put("cli_name", AGENTS.get(random.nextInt(AGENTS.size()))).put("timeout", 60);
        }
        return task;
    }

    /** Reads the tenant's event stream (SSE), reconnecting every minute, until told to stop. */
    private static void readEvents(int port, AtomicBoolean running, AtomicLong seen, AtomicLong opened) {
        HttpClient http = HttpClient.newHttpClient();
        while (running.get()) {
            long until = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            try {
                HttpResponse<InputStream> response = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/api/v1/events"))
                        .header("X-API-Key", KEY).header("Accept", "text/event-stream").GET().build(), HttpResponse.BodyHandlers.ofInputStream());
                opened.incrementAndGet();
                try (InputStream in = response.body();
                     BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                    String line;
                    while (running.get() && System.nanoTime() < until && (line = reader.readLine()) != null) {
                        if (line.startsWith("event:")) {
                            seen.incrementAndGet();
                        }
                    }
                }
            } catch (InterruptedException e) {
                return;
            } catch (java.io.IOException e) {
                if (!running.get()) {
                    return;
                }
            }
        }
    }

    private static Sample sample(Fleet fleet, Process coordinator, Process[] workers, long[] startedAt, long began) throws Exception {
        long coordinatorHeap = heapAfterGc(coordinator.pid());
        int oldest = 0;
        for (int w = 1; w < workers.length; w++) {
            if (startedAt[w] < startedAt[oldest]) {
                oldest = w;
            }
        }
        long workerHeap = heapAfterGc(workers[oldest].pid());
        RedisCommands<String, String> redis = fleet.redis.redis();
        String ns = fleet.redis.namespace();
        long withTtl = 0;
        long withoutTtl = 0;
        long bytesWithoutTtl = 0;
        Map<String, Long> streams = new TreeMap<>();
        long holds = 0;
        for (String pattern : List.of(ns + ":*", "{" + ns + ":*")) {
            ScanCursor cursor = ScanCursor.INITIAL;
            do {
                KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(pattern).limit(1000));
                for (String key : page.getKeys()) {
                    long ttl = redis.pttl(key);
                    if (ttl == -2) {
                        continue; // gone meanwhile
                    }
                    if (ttl >= 0) {
                        withTtl++;
                    } else {
                        withoutTtl++;
                        Long bytes = redis.memoryUsage(key);
                        bytesWithoutTtl += bytes == null ? 0 : bytes;
                        String type = redis.type(key);
                        if ("stream".equals(type)) {
                            streams.put(key, redis.xlen(key) - notAcknowledged(redis, key));
                        }
                    }
                    if (key.endsWith(":holds") && "hash".equals(redis.type(key))) {
                        holds += redis.hlen(key);
                    }
                }
                cursor = page;
            } while (!cursor.isFinished());
        }
        long usedMemory = 0;
        Matcher used = Pattern.compile("used_memory:(\\d+)").matcher(redis.info("memory"));
        if (used.find()) {
            usedMemory = Long.parseLong(used.group(1));
        }
        Map<String, Long> rows = new TreeMap<>();
        for (String table : fleet.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                + "AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'flyway%'", fleet.schema)) {
            rows.put(table, fleet.count("SELECT count(*) FROM \"" + table + "\""));
        }
        return new Sample(Duration.ofNanos(System.nanoTime() - began).toSeconds(), rows.getOrDefault("tasks", 0L), finalTasks(fleet),
                coordinatorHeap, workerHeap, withTtl, withoutTtl, bytesWithoutTtl, streams, rows, holds, usedMemory);
    }

    /** Entries of the stream not yet acknowledged by its worker group: pending (delivered) and lag (not yet delivered). */
    @SuppressWarnings("unchecked")
    private static long notAcknowledged(RedisCommands<String, String> redis, String stream) {
        long count = 0;
        for (Object group : redis.xinfoGroups(stream)) {
            List<Object> fields = (List<Object>) group;
            for (int i = 0; i + 1 < fields.size(); i += 2) {
                String name = String.valueOf(fields.get(i));
                if ((name.equals("pending") || name.equals("lag")) && fields.get(i + 1) instanceof Long n) {
                    count += n;
                }
            }
        }
        return count;
    }

    private static long holds(Fleet fleet) {
        RedisCommands<String, String> redis = fleet.redis.redis();
        long holds = 0;
        ScanCursor cursor = ScanCursor.INITIAL;
        do {
            KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(fleet.redis.namespace() + ":*:holds").limit(1000));
            for (String key : page.getKeys()) {
                holds += redis.hlen(key);
            }
            cursor = page;
        } while (!cursor.isFinished());
        return holds;
    }

    /** Tokens still reserved in the fleet's budget pools (field {@code reserved} of every pool hash). */
    private static long reservedTokens(Fleet fleet) {
        RedisCommands<String, String> redis = fleet.redis.redis();
        long reserved = 0;
        ScanCursor cursor = ScanCursor.INITIAL;
        do {
            KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(fleet.redis.namespace() + ":budget:*").limit(1000));
            for (String key : page.getKeys()) {
                if ("hash".equals(redis.type(key)) && !key.endsWith(":holds")) {
                    String value = redis.hget(key, "reserved");
                    reserved += value == null ? 0 : Long.parseLong(value);
                }
            }
            cursor = page;
        } while (!cursor.isFinished());
        return reserved;
    }

    /** Heap in use right after a full GC, in KiB ({@code jcmd GC.run}, then {@code GC.heap_info}); -1 when unreadable. */
    static long heapAfterGc(long pid) throws Exception {
        String jcmd = Path.of(Fleet.JAVA).resolveSibling("jcmd").toString();
        run(jcmd, Long.toString(pid), "GC.run");
        Matcher used = HEAP_USED.matcher(run(jcmd, Long.toString(pid), "GC.heap_info"));
        return used.find() ? Long.parseLong(used.group(1)) : -1;
    }

    private static String run(String... argv) throws Exception {
        Process process = new ProcessBuilder(argv).redirectErrorStream(true).start();
        String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        process.waitFor(30, TimeUnit.SECONDS);
        return out;
    }

    private static long max(List<Sample> samples, java.util.function.ToLongFunction<Sample> value) {
        return samples.stream().mapToLong(value).max().orElse(0);
    }

    private static String shortNames(Map<String, Long> streams, String namespace) {
        Map<String, Long> out = new TreeMap<>();
        streams.forEach((k, v) -> out.put(k.replace(namespace + ":", ""), v));
        return out.toString().replace(" ", "");
    }

    private static long finalTasks(Fleet fleet) throws Exception {
        return fleet.count("SELECT count(*) FROM tasks WHERE status IN ('completed', 'partial', 'failed', 'cancelled')");
    }

    private static int intSetting(String name, int value) {
        String set = System.getProperty("kage.chaos." + name, System.getenv("KAGE_CHAOS_" + name.toUpperCase(Locale.ROOT)));
        if (set == null || set.isBlank()) {
            return value;
        }
        int parsed = Integer.parseInt(set.trim());
        if (parsed < 1) {
            throw new IllegalArgumentException("KAGE_CHAOS_" + name.toUpperCase(Locale.ROOT) + "=" + set + ": must be positive");
        }
        return parsed;
    }
}
