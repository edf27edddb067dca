// Kage's half of ops/bench/queue.sh: no-op jobs through the real worker, measured from outside.
//
// Run as a single-file program on the worker's shaded jar, which holds the shared classes:
//   java -cp worker/target/kage-worker.jar ops/bench/KageQueueBench.java
// Not part of any production jar. Settings come from the environment (queue.sh sets them):
//   BENCH_JOBS                 jobs to run (default 20000)
//   BENCH_RUN_DIR              folder for the agents file, the worker's log and work dir
//   BENCH_WORKER_JAR           the worker jar to start
//   BENCH_COORDINATOR_JAR      the coordinator jar to start for the batch submit
//   BENCH_COORDINATOR_JAVA_OPTS extra JVM options for the coordinator, space-separated
//   BENCH_SUBMIT_WARMUP        batches of 1,000 tasks that warm the coordinator before the timed submit (default 20;
//                              the BullMQ side makes as many addBulk calls into a queue of its own first)
//   BENCH_ADMIN_DATABASE_URL   an existing database on the server, used to create and drop the bench's own
//   BENCH_DATABASE_URL         the bench's own database (created here, dropped at the end)
//   BENCH_WORKER_JAVA_OPTS     extra JVM options for the worker (e.g. a JFR recording), space-separated
//   BENCH_LOG_LEVEL            the worker's KAGE_LOG_LEVEL (default INFO, the product's default)
//   BENCH_SLOTS                the worker's MAX_PARALLEL_CLIS (default 50)
//   BENCH_DEFAULT_REPO         the worker's KAGE_DEFAULT_REPO (start-latency.sh: a repository for command agents)
//   REDIS_URL
//
// Steps: create the database and a fresh namespace; start the packaged coordinator and submit the tasks
// through POST /api/v1/tasks:batch, 1,000 a request, timed end to end (after warm-up batches for an agent
// nobody serves); stop the coordinator; time the single-submit path's Redis steps too (to a stream nobody
// reads); start ONE worker process serving a noop agent with MAX_PARALLEL_CLIS=50; time from its first
// claim until every entry is acknowledged; read INFO commandstats before and after each phase and
// Postgres's transaction counters; stop the worker; delete the namespace's keys and drop the database.
// The last line is "RESULT kage key=value ...", which queue.sh reads.

import dev.kage.config.DatabaseUrl;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.redis.KageKeys;
import dev.kage.store.Database;
import dev.kage.task.JobMessage;
import dev.kage.task.LiveTaskState;
import dev.kage.task.Priority;
import io.lettuce.core.KeyScanCursor;
import io.lettuce.core.RedisClient;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanCursor;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Clock;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

public class KageQueueBench {
    static final String AGENT = "noop";
    static final String OTHER_AGENT = "noop-single";
    static final String TENANT = "bench";
    static final String GROUP = KageKeys.WORKER_GROUP;

    public static void main(String[] args) throws Exception {
        int jobs = Integer.parseInt(env("BENCH_JOBS", "20000"));
        Path runDir = Path.of(env("BENCH_RUN_DIR", ".run/bench/kage")).toAbsolutePath();
        String workerJar = required("BENCH_WORKER_JAR");
        String coordinatorJar = required("BENCH_COORDINATOR_JAR");
        String adminUrl = required("BENCH_ADMIN_DATABASE_URL");
        String benchUrl = required("BENCH_DATABASE_URL");
        String redisUrl = env("REDIS_URL", "redis://127.0.0.1:6379");
        String suffix = UUID.randomUUID().toString().substring(0, 8);
        String namespace = "kage-bench-" + suffix;
        String dbName = databaseName(benchUrl);
        Files.createDirectories(runDir);

        RedisClient client = RedisClient.create(redisUrl);
        StatefulRedisConnection<String, String> connection = client.connect();
        StatefulRedisConnection<String, String> probeConnection = client.connect();
        RedisCommands<String, String> redis = connection.sync();
        RedisCommands<String, String> probe = probeConnection.sync();
        KageKeys keys = new KageKeys(namespace);
        String stream = keys.jobStream(AGENT, Priority.NORMAL);
        Process worker = null;
        AtomicReference<Process> running = new AtomicReference<>();
        Runnable cleanUp = cleanUp(running, redis, namespace, adminUrl, dbName);
        Runtime.getRuntime().addShutdownHook(new Thread(cleanUp));
        createDatabase(adminUrl, dbName);
        try (Database db = Database.open(DatabaseUrl.parse("BENCH_DATABASE_URL", benchUrl), "development_docs", "bench", 4)) {
            say("namespace " + namespace + ", database " + dbName + ", " + jobs + " jobs");
            List<UUID> tasks = new ArrayList<>(jobs);
            for (int i = 0; i < jobs; i++) {
                tasks.add(UUID.randomUUID());
            }

            JobQueue queue = new JobQueue(keys, redis);
            LiveTaskState live = new LiveTaskState(keys, redis);
            EventLog events = new EventLog(keys, redis, Clock.systemUTC());
            queue.ensureStreams(AGENT);

            Map<String, Long> idle0 = commandStats(probe);
            // A second of the idle worker's own Redis traffic, measured so it can be left out of the job's count.
            Thread.sleep(1_000);
            Map<String, Long> idle1 = commandStats(probe);
            long background = total(minus(idle1, idle0, 0));
            say("other clients' Redis commands while idle: " + background + "/s");

            // The batch submit end to end: the packaged coordinator, POST /api/v1/tasks:batch with 1,000 tasks a request,
            // one request after another (as the BullMQ side awaits each addBulk of 1,000). Each request parses and
            // validates its tasks, inserts their rows in one transaction, runs the enqueue-once scripts (100 jobs a
            // call) and the task.submitted events (200 a call), and marks the rows enqueued. The coordinator is warmed
            // first with batches for an agent nobody serves (a coordinator is a long-running service).
            Path agents = runDir.resolve("agents.yml");
            Files.writeString(agents, "agents:\n  " + AGENT + ":\n    type: noop\n  " + OTHER_AGENT + ":\n    type: noop\n");
            String apiKey = "bench-" + UUID.randomUUID();
            Process coordinator = startCoordinator(runDir, coordinatorJar, agents, namespace, redisUrl, benchUrl, apiKey);
            running.set(coordinator);
            int port = coordinatorPort;
            HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
            awaitHealthy(http, port, coordinator, runDir);
            // A coordinator's first reconciler pass (5 s after it starts) looks for every open task's jobs in Redis: a
            // start-up cost, which a long-running coordinator does not pay per request. Before session 14 it fell
            // inside the timed submit and counted as up to half of the coordinator's CPU per task.
            awaitLogLine(runDir.resolve("coordinator.log"), "Start-up check done", coordinator);
            int warm = Integer.parseInt(env("BENCH_SUBMIT_WARMUP", "20"));
            for (int i = 0; i < warm; i++) {
                submit(http, port, apiKey, batchBody(OTHER_AGENT, 1_000));
            }
            List<String> bodies = new ArrayList<>();
            for (int from = 0; from < jobs; from += 1_000) {
                bodies.add(batchBody(AGENT, Math.min(1_000, jobs - from)));
            }
            Map<String, Long> enq0 = commandStats(probe);
            Map<String, Long> enqCpu0 = serviceCpu();
            long coordinatorCpu0 = cpuTicks(coordinator.pid());
            long clientCpu0 = cpuTicks(ProcessHandle.current().pid());
            long enqStart = System.nanoTime();
            long[] latencies = new long[bodies.size()];
            for (int i = 0; i < bodies.size(); i++) {
                long sent = System.nanoTime();
                submit(http, port, apiKey, bodies.get(i));
                latencies[i] = System.nanoTime() - sent;
            }
            // Timed until every job is in its stream, not only answered: a 202 means the rows are committed, and a
            // coordinator may still be adding the last batch's jobs to Redis when it answers.
            long inStreamDeadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(60);
            long lengthPolls = 1;
            while (redis.xlen(stream) < jobs && System.nanoTime() < inStreamDeadline) {
                java.util.concurrent.locks.LockSupport.parkNanos(200_000);
                lengthPolls++;
            }
            double enqSeconds = (System.nanoTime() - enqStart) / 1e9;
            Map<String, Long> enqCpu1 = serviceCpu();
            long coordinatorCpu = cpuTicks(coordinator.pid()) - coordinatorCpu0;
            long clientCpu = cpuTicks(ProcessHandle.current().pid()) - clientCpu0;
            java.util.Arrays.sort(latencies);
            Map<String, Long> enqDelta = minus(commandStats(probe), enq0, 0);
            long ownLengthPolls = lengthPolls;
            enqDelta.computeIfPresent("xlen", (name, calls) -> calls == ownLengthPolls ? null : calls - ownLengthPolls);
            stop(coordinator);
            running.set(null);
            long queued = redis.xlen(stream);
            if (queued != jobs) {
                throw new IllegalStateException("enqueued " + queued + " of " + jobs + " jobs");
            }
            long unmarked = db.jdbi().withHandle(h -> h.createQuery(
                    "SELECT count(*) FROM tasks WHERE enqueued_at IS NULL").mapTo(Long.class).one());
            if (unmarked != 0) {
                throw new IllegalStateException(unmarked + " submitted tasks are not marked enqueued");
            }
            say(String.format("enqueue, batch submit (POST /api/v1/tasks:batch, 1,000 a request, end to end): %d jobs in %.2f s"
                    + " = %.0f jobs/s, %.1f Redis commands/job (the coordinator's own background included)", jobs,
                    enqSeconds, jobs / enqSeconds, (double) total(enqDelta) / jobs));
            say(String.format("  per request: median %.1f ms, slowest %.1f ms", latencies[latencies.length / 2] / 1e6,
                    latencies[latencies.length - 1] / 1e6));
            double enqCoordinatorCpu = ticksToMicros(coordinatorCpu, jobs);
            double enqPostgresCpu = ticksToMicros(enqCpu1.getOrDefault("postgres", 0L) - enqCpu0.getOrDefault("postgres", 0L), jobs);
            double enqRedisCpu = ticksToMicros(enqCpu1.getOrDefault("redis-server", 0L) - enqCpu0.getOrDefault("redis-server", 0L), jobs);
            say(String.format("  CPU per task: coordinator %.0f µs (its JIT compiler and background included), Postgres %.0f µs,"
                    + " Redis %.0f µs, this bench's client %.0f µs", enqCoordinatorCpu, enqPostgresCpu, enqRedisCpu,
                    ticksToMicros(clientCpu, jobs)));

            // Enqueue as single submits do (POST /api/v1/tasks), from 32 request threads on one shared connection: live
            // state, enqueue-once script, event. To another agent's stream, which the worker below does not serve.
            Map<String, Long> single0 = commandStats(probe);
            long singleStart = System.nanoTime();
            try (ExecutorService pool = Executors.newFixedThreadPool(32)) {
                for (UUID task : tasks) {
                    pool.execute(() -> {
                        String id = task.toString();
                        live.created(TENANT, id, List.of(OTHER_AGENT));
                        queue.enqueue(job(task, OTHER_AGENT));
                        events.publish("task.submitted", Map.of("task_id", id, "tenant", TENANT, "agents", OTHER_AGENT));
                    });
                }
            }
            double singleSeconds = (System.nanoTime() - singleStart) / 1e9;
            Map<String, Long> singleDelta = minus(commandStats(probe), single0, 0);
            say(String.format("enqueue, one task per request: %d jobs in %.2f s = %.0f jobs/s, %.1f Redis commands/job", jobs,
                    singleSeconds, jobs / singleSeconds, (double) total(singleDelta) / jobs));

            String lastEntry = redis.xrevrange(stream, io.lettuce.core.Range.create("-", "+"), io.lettuce.core.Limit.from(1))
                    .getFirst().getId();
            long xact0 = transactions(db, dbName);
            long[] taskUpdates0 = taskUpdates(db);
            Map<String, Long> run0 = commandStats(probe);
            Map<String, Long> cpu0 = Map.of();
            long workerCpu0 = 0;
            long benchCpu0 = 0;
            long spawned = System.nanoTime();
            worker = startWorker(runDir, workerJar, agents, namespace, redisUrl, benchUrl, suffix);
            running.set(worker);
            long polls = 0;
            long firstClaim = 0;
            // The second half of the jobs (the group's entries-read less pending reaches half): the worker warm (JIT,
            // pools, caches), the figure for a long-running worker. Needs Redis 7's entries-read; else not reported.
            long half = 0;
            Map<String, Long> cpuHalf = Map.of();
            long workerCpuHalf = 0;
            long done = 0;
            long deadline = spawned + TimeUnit.MINUTES.toNanos(15);
            while (done == 0) {
                if (!worker.isAlive()) {
                    throw new IllegalStateException("the worker exited with status " + worker.exitValue() + "; see "
                            + runDir.resolve("worker.log"));
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("not done after 15 minutes; see " + runDir.resolve("worker.log"));
                }
                Map<String, Object> group = group(probe, stream);
                polls++;
                String delivered = String.valueOf(group.get("last-delivered-id"));
                long pending = ((Number) group.get("pending")).longValue();
                long now = System.nanoTime();
                if (firstClaim == 0 && !delivered.equals("0-0")) {
                    firstClaim = now;
                    cpu0 = serviceCpu();
                    workerCpu0 = cpuTicks(worker.pid());
                    benchCpu0 = cpuTicks(ProcessHandle.current().pid());
                }
                Object read = group.get("entries-read");
                if (half == 0 && firstClaim != 0 && read instanceof Number entries
                        && entries.longValue() - pending >= jobs / 2) {
                    half = now;
                    cpuHalf = serviceCpu();
                    workerCpuHalf = cpuTicks(worker.pid());
                }
                if (delivered.equals(lastEntry) && pending == 0) {
                    done = now;
                } else {
                    // The bench watches the stream from outside; a short poll keeps the end time within 10 ms.
                    Thread.sleep(firstClaim == 0 ? 2 : 10);
                }
            }
            Map<String, Long> runDelta = minus(commandStats(probe), run0, polls);
            Map<String, Long> cpu1 = serviceCpu();
            long workerCpu = cpuTicks(worker.pid()) - workerCpu0;
            long benchCpu = cpuTicks(ProcessHandle.current().pid()) - benchCpu0;
            long recorded = db.jdbi().withHandle(h -> h.createQuery(
                    "SELECT count(*) FROM execution_results WHERE status = 'completed' AND usage_source = 'agent'")
                    .mapTo(Long.class).one());
            stop(worker);
            worker = null;
            running.set(null);
            long xact1 = transactions(db, dbName);
            long[] taskUpdates1 = taskUpdates(db);
            long[] taskUpdates = {taskUpdates1[0] - taskUpdates0[0], taskUpdates1[1] - taskUpdates0[1]};

            double seconds = (done - firstClaim) / 1e9;
            double fromSpawn = (done - spawned) / 1e9;
            long commands = total(runDelta);
            say(String.format("run: %d jobs acknowledged (%d completed rows) in %.2f s from the first claim = %.0f jobs/s"
                    + " (%.2f s from process start, JVM start-up included)", jobs, recorded, seconds, jobs / seconds, fromSpawn));
            say(String.format("Redis: %d commands = %.2f per job (bench's own %d polls subtracted)", commands,
                    (double) commands / jobs, polls));
            printBreakdown(runDelta, jobs);
            say(String.format("Postgres: %d transactions in %s = %.2f per job; task rows updated %.2f times per job (%.2f HOT)",
                    xact1 - xact0, dbName, (double) (xact1 - xact0) / jobs, (double) taskUpdates[0] / jobs,
                    (double) taskUpdates[1] / jobs));
            long redisCpu = cpu1.getOrDefault("redis-server", 0L) - cpu0.getOrDefault("redis-server", 0L);
            long postgresCpu = cpu1.getOrDefault("postgres", 0L) - cpu0.getOrDefault("postgres", 0L);
            if (workerCpu0 > 0) {
                say(String.format("CPU per job, first claim to last ack: worker %.0f µs, Postgres %.0f µs, Redis %.0f µs,"
                        + " this bench's polling %.0f µs", ticksToMicros(workerCpu, jobs), ticksToMicros(postgresCpu, jobs),
                        ticksToMicros(redisCpu, jobs), ticksToMicros(benchCpu, jobs)));
            }
            int halfJobs = jobs - jobs / 2;
            double halfSeconds = half == 0 ? Double.NaN : (done - half) / 1e9;
            double halfWorkerCpu = half == 0 ? Double.NaN : ticksToMicros(workerCpu + workerCpu0 - workerCpuHalf, halfJobs);
            double halfPostgresCpu = half == 0 ? Double.NaN
                    : ticksToMicros(cpu1.getOrDefault("postgres", 0L) - cpuHalf.getOrDefault("postgres", 0L), halfJobs);
            double halfRedisCpu = half == 0 ? Double.NaN
                    : ticksToMicros(cpu1.getOrDefault("redis-server", 0L) - cpuHalf.getOrDefault("redis-server", 0L), halfJobs);
            if (half != 0) {
                say(String.format("second half (jobs %d-%d, warm): %.0f jobs/s; CPU per job: worker %.0f µs, Postgres %.0f µs,"
                        + " Redis %.0f µs", jobs / 2 + 1, jobs, halfJobs / halfSeconds, halfWorkerCpu, halfPostgresCpu, halfRedisCpu));
            }
            if (recorded != jobs) {
                throw new IllegalStateException("only " + recorded + " of " + jobs + " outcomes are recorded");
            }
            double[] floor = floor(db, client, keys, jobs);
            say(String.format("floor (no worker: the servers' work any design must do per job): Redis %.1f µs (claim and"
                    + " acknowledge 100 at a time, two events), Postgres %.1f µs (the result row by COPY and the task's"
                    + " status, 500 a transaction)", floor[0], floor[1]));
            System.out.printf("RESULT kage jobs=%d seconds=%.3f jobs_per_s=%.1f seconds_from_start=%.3f commands=%d"
                            + " commands_per_job=%.2f enqueue_per_s=%.1f enqueue_commands_per_job=%.2f pg_xact_per_job=%.2f"
                            + " background_per_s=%d enqueue_single_per_s=%.1f enqueue_single_commands_per_job=%.2f"
                            + " cpu_us_client=%.0f cpu_us_redis=%.0f cpu_us_postgres=%.0f half_jobs_per_s=%.1f"
                            + " half_cpu_us_client=%.0f half_cpu_us_redis=%.0f half_cpu_us_postgres=%.0f"
                            + " enqueue_cpu_us_client=%.0f enqueue_cpu_us_redis=%.0f enqueue_cpu_us_postgres=%.0f"
                            + " floor_us_redis=%.1f floor_us_postgres=%.1f%n", jobs, seconds,
                    jobs / seconds, fromSpawn, commands, (double) commands / jobs, jobs / enqSeconds,
                    (double) total(enqDelta) / jobs, (double) (xact1 - xact0) / jobs, background, jobs / singleSeconds,
                    (double) total(singleDelta) / jobs,
                    ticksToMicros(workerCpu, jobs), ticksToMicros(redisCpu, jobs), ticksToMicros(postgresCpu, jobs),
                    halfJobs / halfSeconds, halfWorkerCpu, halfRedisCpu, halfPostgresCpu, enqCoordinatorCpu, enqRedisCpu,
                    enqPostgresCpu, floor[0], floor[1]);
        } finally {
            cleanUp.run();
            connection.close();
            probeConnection.close();
            client.shutdown();
        }
    }

    /**
     * The servers' CPU per job (µs) for what any queue with a durable row per job must make them do, with no worker at
     * all: Redis claims entries of a job's fields 100 at a time ({@code XREADGROUP}), acknowledges them 100 at a time
     * and appends a started and a finished event per job ({@code XADD}, capped); Postgres takes the result rows by
     * {@code COPY} and sets the tasks' status, 500 jobs a transaction. Kage's worker does more per job (live state,
     * enqueue-once markers, smaller batches); this is the floor that no worker, however cheap, goes under on this
     * machine. Run on the bench's own namespace and database (removed afterwards like the rest).
     *
     * @return {Redis µs per job, Postgres µs per job}
     */
    static double[] floor(Database db, RedisClient client, KageKeys keys, int jobs) throws Exception {
        String stream = keys.namespace() + ":floor:jobs";
        String events = keys.namespace() + ":floor:events";
        List<UUID> tasks = insertTasks(db, jobs);
        db.jdbi().useHandle(h -> h.execute("ANALYZE tasks"));
        try (StatefulRedisConnection<String, String> connection = client.connect()) {
            var async = connection.async();
            connection.setAutoFlushCommands(false);
            List<io.lettuce.core.RedisFuture<?>> replies = new ArrayList<>();
            for (int i = 0; i < jobs; i++) {
                replies.add(async.xadd(stream, job(tasks.get(i), AGENT).toFields()));
                if (replies.size() == 1_000 || i == jobs - 1) {
                    connection.flushCommands();
                    for (var reply : replies) {
                        reply.get();
                    }
                    replies.clear();
                }
            }
            connection.setAutoFlushCommands(true);
            async.xgroupCreate(io.lettuce.core.XReadArgs.StreamOffset.from(stream, "0"), GROUP).get();
            Map<String, Long> cpu0 = serviceCpu();
            var me = io.lettuce.core.Consumer.from(GROUP, "floor");
            var args = io.lettuce.core.XReadArgs.Builder.count(100);
            var capped = io.lettuce.core.XAddArgs.Builder.maxlen(100_000).approximateTrimming();
            for (int done = 0; done < jobs; ) {
                var claimed = async.xreadgroup(me, args, io.lettuce.core.XReadArgs.StreamOffset.lastConsumed(stream)).get();
                connection.setAutoFlushCommands(false);
                String[] ids = new String[claimed.size()];
                for (int i = 0; i < ids.length; i++) {
                    var body = claimed.get(i).getBody();
                    ids[i] = claimed.get(i).getId();
                    replies.add(async.xadd(events, capped, "type", "job.started", "task_id", body.get("task_id"),
                            "tenant", body.get("tenant"), "agent", body.get("agent"), "job_id", body.get("job_id"), "worker", "floor"));
                }
                replies.add(async.xack(stream, GROUP, ids));
                for (var entry : claimed) {
                    var body = entry.getBody();
                    replies.add(async.xadd(events, capped, "type", "job.finished", "task_id", body.get("task_id"),
                            "tenant", body.get("tenant"), "agent", body.get("agent"), "job_id", body.get("job_id"),
                            "status", "completed"));
                }
                connection.flushCommands();
                connection.setAutoFlushCommands(true);
                for (var reply : replies) {
                    reply.get();
                }
                replies.clear();
                done += ids.length;
            }
            Map<String, Long> cpu1 = serviceCpu();
            double redis = ticksToMicros(cpu1.getOrDefault("redis-server", 0L) - cpu0.getOrDefault("redis-server", 0L), jobs);

            cpu0 = serviceCpu();
            for (int from = 0; from < jobs; from += 500) {
                List<UUID> chunk = tasks.subList(from, Math.min(jobs, from + 500));
                int first = from;
                db.jdbi().useTransaction(h -> {
                    StringBuilder rows = new StringBuilder();
                    for (int i = 0; i < chunk.size(); i++) {
                        rows.append(chunk.get(i)).append("\tfloor-").append(first + i).append('\t').append(AGENT)
                                .append("\tcompleted\tagent\tfloor\t1\n");
                    }
                    h.getConnection().unwrap(org.postgresql.PGConnection.class).getCopyAPI().copyIn(
                            "COPY execution_results (task_id, job_id, cli_name, status, usage_source, worker_id, attempt) FROM STDIN",
                            new java.io.StringReader(rows.toString()));
                    h.createUpdate("UPDATE tasks SET status = 'completed', updated_at = now(), completed_at = now() WHERE id = ANY(:ids)")
                            .bindArray("ids", UUID.class, chunk).execute();
                });
            }
            cpu1 = serviceCpu();
            double postgres = ticksToMicros(cpu1.getOrDefault("postgres", 0L) - cpu0.getOrDefault("postgres", 0L), jobs);
            return new double[] {redis, postgres};
        }
    }

    /** Stops the worker, deletes the namespace's keys and drops the database, once (also on Ctrl-C). */
    static Runnable cleanUp(AtomicReference<Process> running, RedisCommands<String, String> redis, String namespace,
                            String adminUrl, String dbName) {
        AtomicBoolean done = new AtomicBoolean();
        return () -> {
            if (!done.compareAndSet(false, true)) {
                return;
            }
            try {
                Process worker = running.getAndSet(null);
                if (worker != null) {
                    stop(worker);
                }
                long deleted = deleteNamespace(redis, namespace);
                say("removed " + deleted + " Redis keys of " + namespace);
                dropDatabase(adminUrl, dbName);
                say("dropped database " + dbName);
            } catch (Exception e) {
                say("clean-up failed (" + e + "); remove keys " + namespace + ":* and database " + dbName + " by hand");
            }
        };
    }

    /** CPU time (clock ticks) of every redis-server and postgres process, from /proc; empty elsewhere than Linux. */
    static Map<String, Long> serviceCpu() {
        Map<String, Long> ticks = new HashMap<>();
        ProcessHandle.allProcesses().forEach(p -> {
            try {
                String comm = Files.readString(Path.of("/proc", Long.toString(p.pid()), "comm")).trim();
                if (comm.equals("redis-server") || comm.equals("postgres")) {
                    long t = cpuTicks(p.pid());
                    if (t > 0) {
                        ticks.merge(comm, t, Long::sum);
                    }
                }
            } catch (Exception gone) {
                // not Linux, or the process ended meanwhile
            }
        });
        return ticks;
    }

    /** utime + stime of a process and its waited-for children, in clock ticks; -1 when unknown. */
    static long cpuTicks(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return Long.parseLong(f[11]) + Long.parseLong(f[12]) + Long.parseLong(f[13]) + Long.parseLong(f[14]);
        } catch (Exception e) {
            return -1;
        }
    }

    /** Linux reports CPU time in USER_HZ ticks, 100 per second on every common build. */
    static double ticksToMicros(long ticks, int jobs) {
        return ticks * 10_000.0 / jobs;
    }

    static JobMessage job(UUID task, String agent) {
        String id = task.toString();
        return new JobMessage(JobMessage.jobId(id, agent), id, TENANT, agent, Priority.NORMAL, "noop", "", "main", 60, 50_000, 1);
    }

    /** Task rows for {@code jobs} tasks of {@link #AGENT}, marked enqueued, in one batch (start-latency.sh's set-up). */
    static List<UUID> insertTasks(Database db, int jobs) {
        List<UUID> ids = new ArrayList<>(jobs);
        for (int i = 0; i < jobs; i++) {
            ids.add(UUID.randomUUID());
        }
        String assignments = "[{\"cli_name\":\"" + AGENT + "\",\"timeout\":60}]";
        db.jdbi().useTransaction(h -> {
            var batch = h.prepareBatch("""
                    INSERT INTO tasks (id, tenant, description, status, priority, base_branch, cli_assignments, token_limit,
                                       enqueued_at)
                    VALUES (:id, :tenant, 'noop', 'queued', 'normal', 'main', CAST(:assignments AS jsonb), 50000, now())
                    """);
            for (UUID id : ids) {
                batch.bind("id", id).bind("tenant", TENANT).bind("assignments", assignments).add();
            }
            batch.execute();
        });
        return ids;
    }

    /** The coordinator's port, chosen free before it starts. */
    static int coordinatorPort;

    static Process startCoordinator(Path runDir, String jar, Path agents, String namespace, String redisUrl, String dbUrl,
                                    String apiKey) throws Exception {
        try (java.net.ServerSocket socket = new java.net.ServerSocket(0)) {
            coordinatorPort = socket.getLocalPort();
        }
        ProcessBuilder builder = javaProcess(runDir, jar, "BENCH_COORDINATOR_JAVA_OPTS", "coordinator.log", agents, namespace,
                redisUrl, dbUrl);
        Map<String, String> env = builder.environment();
        env.put("KAGE_API_KEYS", TENANT + ":" + apiKey);
        env.put("PORT", Integer.toString(coordinatorPort));
        env.put("KAGE_LOG_LEVEL", env("BENCH_LOG_LEVEL", "INFO"));
        return builder.start();
    }

    static void awaitHealthy(HttpClient http, int port, Process coordinator, Path runDir) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (true) {
            if (!coordinator.isAlive()) {
                throw new IllegalStateException("the coordinator exited with status " + coordinator.exitValue() + "; see "
                        + runDir.resolve("coordinator.log"));
            }
            try {
                if (http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/health")).build(),
                        HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
                    return;
                }
            } catch (java.io.IOException notYet) {
                // not listening yet
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("the coordinator is not healthy after 90 s; see " + runDir.resolve("coordinator.log"));
            }
            // A bench, not a test: it waits for another process's HTTP port, whose readiness it can only poll.
            Thread.sleep(200);
        }
    }

    /**
     * Waits until the process has written a line containing {@code text} to its log; a build older than that line
     * (BENCH_COORDINATOR_JAR) is given 40 s (the first pass comes 5 s after the start, or once Redis has been up 25 s).
     */
    static void awaitLogLine(Path log, String text, Process process) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(40);
        while (!Files.readString(log).contains(text)) {
            if (!process.isAlive()) {
                throw new IllegalStateException("the process exited; see " + log);
            }
            if (System.nanoTime() > deadline) {
                say("no '" + text + "' in " + log + " after 40 s (an older build?): going on");
                return;
            }
            // A bench, not a test: another process's log can only be polled.
            Thread.sleep(200);
        }
    }

    /** {"tasks": [...]}: {@code count} tasks for {@code agent}, in the shape the README documents. */
    static String batchBody(String agent, int count) {
        StringBuilder body = new StringBuilder("{\"tasks\": [");
        for (int i = 0; i < count; i++) {
            body.append(i == 0 ? "" : ", ").append("{\"description\": \"noop ").append(i)
                    .append("\", \"cli_assignments\": [{\"cli_name\": \"").append(agent).append("\", \"timeout\": 60}]}");
        }
        return body.append("]}").toString();
    }

    static void submit(HttpClient http, int port, String apiKey, String body) throws Exception {
        HttpResponse<String> response = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/api/v1/tasks:batch"))
                .header("X-API-Key", apiKey).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 202) {
            throw new IllegalStateException("POST /api/v1/tasks:batch answered " + response.statusCode() + ": " + response.body());
        }
    }

    static Process startWorker(Path runDir, String jar, Path agents, String namespace, String redisUrl, String dbUrl,
                               String suffix) throws Exception {
        ProcessBuilder builder = javaProcess(runDir, jar, "BENCH_WORKER_JAVA_OPTS", "worker.log", agents, namespace, redisUrl,
                dbUrl);
        Map<String, String> env = builder.environment();
        env.put("KAGE_WORKER_AGENTS", AGENT);
        env.put("KAGE_WORKER_ID", "bench-" + suffix);
        env.put("KAGE_WORK_DIR", runDir.resolve("work").toString());
        env.put("KAGE_PUSH_BRANCHES", "false");
        env.put("MAX_PARALLEL_CLIS", env("BENCH_SLOTS", "50"));
        if (System.getenv("BENCH_DEFAULT_REPO") != null) {
            env.put("KAGE_DEFAULT_REPO", System.getenv("BENCH_DEFAULT_REPO"));
        }
        env.put("KAGE_LOG_LEVEL", env("BENCH_LOG_LEVEL", "INFO"));
        return builder.start();
    }

    /**
     * {@code java [opts] -jar jar} in {@code runDir}, its output to {@code log} there, with the settings the
     * coordinator and the worker share; {@code optsVariable} names the environment variable with extra JVM options.
     */
    static ProcessBuilder javaProcess(Path runDir, String jar, String optsVariable, String log, Path agents, String namespace,
                                      String redisUrl, String dbUrl) {
        List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        String opts = env(optsVariable, "").trim();
        if (!opts.isEmpty()) {
            command.addAll(List.of(opts.split("\\s+")));
        }
        command.addAll(List.of("-jar", jar));
        ProcessBuilder builder = new ProcessBuilder(command).directory(runDir.toFile())
                .redirectErrorStream(true).redirectOutput(runDir.resolve(log).toFile());
        Map<String, String> env = builder.environment();
        env.put("REDIS_URL", redisUrl);
        env.put("DATABASE_URL", dbUrl);
        env.put("KAGE_DB_SCHEMA", "development_docs");
        env.put("KAGE_NAMESPACE", namespace);
        env.put("KAGE_AGENTS_FILE", agents.toString());
        return builder;
    }

    static void stop(Process worker) throws InterruptedException {
        worker.destroy();
        if (!worker.waitFor(60, TimeUnit.SECONDS)) {
            worker.destroyForcibly().waitFor();
        }
    }

    /** XINFO GROUPS of the stream, the {@code workers} group as a map. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> group(RedisCommands<String, String> redis, String stream) {
        for (Object group : redis.xinfoGroups(stream)) {
            List<Object> list = (List<Object>) group;
            Map<String, Object> map = new HashMap<>();
            for (int i = 0; i + 1 < list.size(); i += 2) {
                map.put(String.valueOf(list.get(i)), list.get(i + 1));
            }
            if (GROUP.equals(String.valueOf(map.get("name")))) {
                return map;
            }
        }
        throw new IllegalStateException("no group " + GROUP + " on " + stream);
    }

    /** Calls per command from INFO commandstats. */
    static Map<String, Long> commandStats(RedisCommands<String, String> redis) {
        Map<String, Long> calls = new TreeMap<>();
        for (String line : redis.info("commandstats").split("\r?\n")) {
            if (line.startsWith("cmdstat_")) {
                String name = line.substring("cmdstat_".length(), line.indexOf(':'));
                for (String part : line.substring(line.indexOf(':') + 1).split(",")) {
                    if (part.startsWith("calls=")) {
                        calls.put(name, Long.parseLong(part.substring("calls=".length())));
                    }
                }
            }
        }
        return calls;
    }

    /**
     * {@code after - before}, less the bench's own calls: the INFO that took {@code before} (a reply never
     * counts itself) and {@code polls} XINFO GROUPS.
     */
    static Map<String, Long> minus(Map<String, Long> after, Map<String, Long> before, long polls) {
        Map<String, Long> delta = new TreeMap<>();
        after.forEach((name, calls) -> {
            long d = calls - before.getOrDefault(name, 0L);
            if (name.equals("info")) {
                d -= 1;
            }
            if (name.equals("xinfo|groups")) {
                d -= polls;
            }
            if (d != 0) {
                delta.put(name, d);
            }
        });
        return delta;
    }

    static long total(Map<String, Long> delta) {
        return delta.values().stream().mapToLong(Long::longValue).sum();
    }

    static void printBreakdown(Map<String, Long> delta, int jobs) {
        delta.entrySet().stream()
                .filter(e -> e.getValue() * 1000L >= jobs)
                .sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
                .forEach(e -> say(String.format("  %-18s %6.2f per job", e.getKey(), (double) e.getValue() / jobs)));
    }

    static long transactions(Database db, String dbName) {
        // Counters reach pg_stat_database when a backend reports them (at the latest when it exits).
        return db.jdbi().withHandle(h -> {
            h.execute("SELECT pg_stat_clear_snapshot()");
            return h.createQuery("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :db")
                    .bind("db", dbName).mapTo(Long.class).one();
        });
    }

    /** Updates of {@code tasks} rows since the database was made (the bench's inserts are no updates): all, HOT. */
    static long[] taskUpdates(Database db) {
        return db.jdbi().withHandle(h -> {
            h.execute("SELECT pg_stat_clear_snapshot()");
            return h.createQuery("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'tasks'")
                    .map((rs, ctx) -> new long[] {rs.getLong(1), rs.getLong(2)}).one();
        });
    }

    static long deleteNamespace(RedisCommands<String, String> redis, String namespace) {
        long deleted = 0;
        ScanCursor cursor = ScanCursor.INITIAL;
        do {
            KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(namespace + ":*").limit(1_000));
            if (!page.getKeys().isEmpty()) {
                deleted += redis.unlink(page.getKeys().toArray(String[]::new));
            }
            cursor = page;
        } while (!cursor.isFinished());
        return deleted;
    }

    static void createDatabase(String adminUrl, String name) throws Exception {
        try (Connection c = admin(adminUrl); Statement s = c.createStatement()) {
            s.execute("CREATE DATABASE \"" + name + "\"");
        }
    }

    static void dropDatabase(String adminUrl, String name) throws Exception {
        try (Connection c = admin(adminUrl); Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
        }
    }

    static Connection admin(String url) throws Exception {
        DatabaseUrl parsed = DatabaseUrl.parse("BENCH_ADMIN_DATABASE_URL", url);
        Properties props = new Properties();
        if (parsed.user() != null) {
            props.setProperty("user", parsed.user());
        }
        if (parsed.password() != null) {
            props.setProperty("password", parsed.password());
        }
        Class.forName("org.postgresql.Driver");
        return DriverManager.getConnection(parsed.jdbcUrl(), props);
    }

    static String databaseName(String url) throws Exception {
        String jdbc = DatabaseUrl.parse("BENCH_DATABASE_URL", url).jdbcUrl();
        String path = jdbc.substring(jdbc.indexOf("//") + 2);
        path = path.substring(path.indexOf('/') + 1);
        int query = path.indexOf('?');
        String name = query < 0 ? path : path.substring(0, query);
        if (!name.matches("[a-z0-9_]{1,63}")) {
            throw new IllegalArgumentException("BENCH_DATABASE_URL: database name '" + name + "' must be lower-case letters,"
                    + " digits and '_'");
        }
        return name;
    }

    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isBlank() ? fallback : value;
    }

    static String required(String name) {
        String value = System.getenv(name);
        if (value == null || value.isBlank()) {
            throw new IllegalArgumentException(name + " is not set (ops/bench/queue.sh sets it)");
        }
        return value;
    }

    static void say(String message) {
        System.out.println("[kage-bench] " + message);
        System.out.flush();
    }
}
