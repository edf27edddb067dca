// The Java half of ops/bench/start-latency.sh: claim -> agent process start, Kage's worker beside the bare floor.
//
// Compiled together with KageQueueBench.java (whose helpers it uses: database, namespace, tasks, worker process,
// clean-up) against the worker's shaded jar. Not part of any production jar. Settings from the environment:
//   BENCH_JOBS (200), BENCH_AGENT_SECONDS (0: /bin/true; else a bash that sleeps so long), BENCH_DEFAULT_REPO (the repository made here and served to the worker), BENCH_SLOTS (the worker's MAX_PARALLEL_CLIS, 5 = the product's default), BENCH_RUN_DIR,
//   BENCH_WORKER_JAR, BENCH_ADMIN_DATABASE_URL, BENCH_DATABASE_URL, REDIS_URL.
//
//   kage  one worker process serving a command agent (/bin/true) with a repository: for each job it claims, the
//         worker holds the budget, fetches/creates the worktree on kage/<task>/<agent>, takes the fleet-wide permit
//         and starts the process; it logs "Job ... agent started X ms after its claim" (kage.job.start), which this
//         reads from its log once all BENCH_JOBS jobs have results.
//   bare  the floor, in this process, one job after another: `git worktree add -B <branch> <dir> <sha>` from the
//         same kind of bare clone, then start /bin/true; timed from before the git command to the process's start.
// Prints RESULT lines with p50/p99 (ms) for each, and RATIO kage_vs_bare_p99.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class StartLatencyBench {
    private static final Pattern STARTED = Pattern.compile("agent started ([0-9.]+) ms after its claim");

    public static void main(String[] args) throws Exception {
        int jobs = Integer.parseInt(KageQueueBench.env("BENCH_JOBS", "200"));
        Path runDir = Path.of(KageQueueBench.env("BENCH_RUN_DIR", ".run/bench/start")).toAbsolutePath();
        String workerJar = KageQueueBench.required("BENCH_WORKER_JAR");
        String adminUrl = KageQueueBench.required("BENCH_ADMIN_DATABASE_URL");
        String benchUrl = KageQueueBench.required("BENCH_DATABASE_URL");
        String redisUrl = KageQueueBench.env("REDIS_URL", "redis://127.0.0.1:6379");
        String suffix = UUID.randomUUID().toString().substring(0, 8);
        String namespace = "kage-startbench-" + suffix;
        String dbName = KageQueueBench.databaseName(benchUrl);
        Files.createDirectories(runDir);
        Path origin = Path.of(KageQueueBench.required("BENCH_DEFAULT_REPO")); // the worker's KAGE_DEFAULT_REPO
        git(null, "init", "--quiet", "-b", "main", origin.toString());
        Files.writeString(origin.resolve("README.md"), "start-latency bench\n");
        git(origin, "add", "README.md");
        git(origin, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "--quiet", "-m", "init");

        List<Double> bare = bare(origin, runDir.resolve("bare-" + suffix), jobs);

        io.lettuce.core.RedisClient client = io.lettuce.core.RedisClient.create(redisUrl);
        var connection = client.connect();
        var redis = connection.sync();
        AtomicReference<Process> running = new AtomicReference<>();
        Runnable cleanUp = KageQueueBench.cleanUp(running, redis, namespace, adminUrl, dbName);
        Runtime.getRuntime().addShutdownHook(new Thread(cleanUp));
        KageQueueBench.createDatabase(adminUrl, dbName);
        List<Double> kage;
        try (var db = dev.kage.store.Database.open(dev.kage.config.DatabaseUrl.parse("BENCH_DATABASE_URL", benchUrl),
                "development_docs", "bench", 2)) {
            var keys = new dev.kage.redis.KageKeys(namespace);
            var queue = new dev.kage.queue.JobQueue(keys, redis);
            queue.ensureStreams(KageQueueBench.AGENT);
            Path agents = runDir.resolve("agents-start.yml");
            // An agent that exits at once (the worker's own jobs then crowd its next starts: a throughput stress), or one
            // that works BENCH_AGENT_SECONDS, as real agents do, so that starts and other jobs' wrap-ups interleave.
            String agentSeconds = KageQueueBench.env("BENCH_AGENT_SECONDS", "0");
            if (!agentSeconds.matches("\\d{1,3}(\\.\\d{1,3})?")) {
                throw new IllegalArgumentException("BENCH_AGENT_SECONDS=" + agentSeconds + ": seconds, e.g. 0 or 0.5");
            }
            String argv = Double.parseDouble(agentSeconds) == 0 ? "[\"/bin/true\", \"{prompt}\"]"
                    : "[\"/bin/bash\", \"-c\", \"sleep " + agentSeconds + "\", \"agent\", \"{prompt}\"]";
            Files.writeString(agents, "agents:\n  " + KageQueueBench.AGENT + ":\n    type: command\n    argv: " + argv + "\n"
                    + "    output: text\n    limits: {requests: 1000000, window_seconds: 1}\n");
            Path log = runDir.resolve("worker.log");
            Files.deleteIfExists(log);
            Process worker = KageQueueBench.startWorker(runDir, workerJar, agents, namespace, redisUrl, benchUrl, suffix);
            running.set(worker);
            // The worker is up (its consumer exists) before the jobs arrive: JVM start-up is not a claim's latency.
            long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(2);
            while (redis.keys(keys.worker("*")).isEmpty()) {
                if (!worker.isAlive() || System.nanoTime() > deadline) {
                    throw new IllegalStateException("the worker did not start; see " + log);
                }
                Thread.sleep(100); // polling the heartbeat key from outside; nothing to wait on
            }
            List<UUID> tasks = KageQueueBench.insertTasks(db, jobs);
            queue.enqueueAll(tasks.stream().map(t -> KageQueueBench.job(t, KageQueueBench.AGENT)).toList());
            deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(10);
            long done = 0;
            while (done < jobs) {
                if (!worker.isAlive() || System.nanoTime() > deadline) {
                    throw new IllegalStateException(done + " of " + jobs + " jobs finished; see " + log);
                }
                Thread.sleep(200); // polling Postgres from outside
                done = db.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM execution_results").mapTo(Long.class).one());
            }
            KageQueueBench.stop(worker);
            running.set(null);
            kage = new ArrayList<>();
            for (String line : Files.readAllLines(log)) {
                Matcher m = STARTED.matcher(line);
                if (m.find()) {
                    kage.add(Double.parseDouble(m.group(1)));
                }
            }
            long failed = db.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM execution_results WHERE status <> 'completed'")
                    .mapTo(Long.class).one());
            if (kage.size() != jobs || failed > 0) {
                throw new IllegalStateException(kage.size() + " start lines for " + jobs + " jobs, " + failed + " failed; see " + log);
            }
        } finally {
            cleanUp.run();
            connection.close();
            client.shutdown();
        }
        print("kage", kage);
        print("bare", bare);
        System.out.printf(Locale.ROOT, "RATIO kage_vs_bare_p50=%.2f kage_vs_bare_p99=%.2f%n", pct(kage, 50) / pct(bare, 50),
                pct(kage, 99) / pct(bare, 99));
    }

    /** git worktree add + process start, one job after another: the floor a worker cannot go below. */
    private static List<Double> bare(Path origin, Path work, int jobs) throws Exception {
        Path cache = work.resolve("cache.git");
        git(null, "clone", "--bare", "--quiet", origin.toString(), cache.toString());
        String sha = git(cache, "rev-parse", "HEAD").trim();
        List<Double> ms = new ArrayList<>();
        for (int i = 0; i < jobs; i++) {
            Path dir = work.resolve("wt-" + i);
            long t0 = System.nanoTime();
            git(cache, "worktree", "add", "--quiet", "-B", "kage/bare-" + i + "/agent", dir.toString(), sha);
            Process p = new ProcessBuilder("/bin/true", "bench").directory(dir.toFile()).start();
            ms.add((System.nanoTime() - t0) / 1e6);
            p.waitFor();
            git(cache, "worktree", "remove", "--force", dir.toString());
        }
        return ms;
    }

    private static String git(Path cwd, String... args) throws Exception {
        List<String> argv = new ArrayList<>(List.of("git"));
        argv.addAll(List.of(args));
        ProcessBuilder builder = new ProcessBuilder(argv).redirectErrorStream(true);
        if (cwd != null) {
            builder.directory(cwd.toFile());
        }
        Process p = builder.start();
        String out = new String(p.getInputStream().readAllBytes());
        if (p.waitFor() != 0) {
            throw new IllegalStateException("git " + String.join(" ", args) + ": " + out);
        }
        return out;
    }

    private static double pct(List<Double> values, int p) {
        List<Double> sorted = values.stream().sorted().toList();
        return sorted.get(Math.min(sorted.size() - 1, (int) Math.ceil(p / 100.0 * sorted.size()) - 1));
    }

    private static void print(String side, List<Double> values) {
        System.out.printf(Locale.ROOT, "RESULT side=%s jobs=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f%n", side, values.size(),
                pct(values, 50), pct(values, 99), pct(values, 100));
    }
}
