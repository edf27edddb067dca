package dev.kage.e2e.chaos;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.kage.e2e.Fleet;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chaos scenario 6, load: {@code POST /api/v1/tasks} at a steady rate with autocannon (a real load tool, from the npm
 * registry) against the packaged coordinator, with a worker process serving the tasks' {@code type: noop} agent so the
 * queued work is real (claimed, run, its result written) without agent processes. The worker starts once the submits
 * are measured and must run every accepted task (it stands for workers on other machines: on two cores a worker working
 * off 1,000 jobs/s beside the coordinator would measure their sum, not the submit path; {@code
 * KAGE_CHAOS_LOAD_WORKERS_BESIDE=true} runs it during the submits). Reported: p50/p99 submit latency,
 * non-2xx answers and socket errors, and whether every accepted task exists (rows in {@code tasks} = 2xx answers, each
 * enqueued). At scale full, then a short search for the highest rate whose p99 is under 50 ms.
 *
 * <p>Passes when no request failed and no task is lost; at scale full also when the rate asked for was achieved
 * (within 5%). Latency is reported, never asserted (CI's machines vary): the figures belong in RELIABILITY.md with the
 * machine's load beside them.
 *
 * <p>Scale (see {@link Chaos}): {@code load_rate} 100 (ci) / 1,000 (full) requests per second for {@code load_seconds}
 * 10 / 60 over {@code load_connections} 100 lanes (at least rate / 5: see {@link Autocannon}); {@code load_step_seconds} 20 per step of the search (full only).
 * {@code KAGE_CHAOS_LOAD_WORKERS} noop workers [1]; 0 lets the tasks wait in the queue. Needs autocannon (see
 * {@link Autocannon}); at scale ci the test is skipped without it, at full it fails.
 */
class LoadChaosIT {
    private static final String KEY = "dev-key-12345";
    private static final String BODY = "{\"description\":\"load\",\"priority\":\"normal\","
            + "\"cli_assignments\":[{\"cli_name\":\"noop\",\"timeout\":60}]}";
    private static final double P99_TARGET_MS = 50;

    @TempDir
    Path dir;

    @Test
    void submitsAtASteadyRateLoseNothingAndFailNone() throws Exception {
        Path autocannon = Autocannon.find();
        if (autocannon == null) {
            String why = "autocannon is not installed (ops/chaos/run.sh and ops/test.sh install it; or set KAGE_CHAOS_AUTOCANNON)";
            assertThat(Chaos.full()).as(why).isFalse();
            Assumptions.abort(why);
        }
        int rate = Chaos.intSetting("load_rate", 100, 1000);
        int seconds = Chaos.intSetting("load_seconds", 10, 60);
        int connections = Chaos.intSetting("load_connections", 100, 100);
        int stepSeconds = Chaos.intSetting("load_step_seconds", 20, 20);
        String workersSetting = System.getProperty("kage.chaos.load_workers", System.getenv("KAGE_CHAOS_LOAD_WORKERS"));
        int workers = workersSetting == null || workersSetting.isBlank() ? 1 : Integer.parseInt(workersSetting.trim());
        // The workers start once the submits are measured and work off everything accepted (on two cores a worker
        // running 1,000 jobs/s beside the coordinator measures their sum: at 1,000/s asked, 916-963/s achieved and p99
        // 218-565 ms, where the coordinator alone answers with p99 < 20 ms); KAGE_CHAOS_LOAD_WORKERS_BESIDE=true runs
        // them during the submits instead.
        boolean beside = Boolean.parseBoolean(System.getProperty("kage.chaos.load_workers_beside",
                String.valueOf(System.getenv("KAGE_CHAOS_LOAD_WORKERS_BESIDE"))));
        Path agents = dir.resolve("agents.yml");
        Files.writeString(agents, "agents:\n  noop:\n    type: noop\n");
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents.toString());
        env.put("MAX_REQUESTS_PER_MINUTE", "1000000");
        Map<String, String> workerEnv = new HashMap<>(env);
        workerEnv.put("MAX_PARALLEL_CLIS", "50");
        Path results = Files.createDirectories(Chaos.resultsDir());

        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "chaos-load"))) {
            long began = System.nanoTime();
            Process coordinator = fleet.startCoordinator(env);
            Path origin = Chaos.createRepo(dir.resolve("origin"));
            if (beside) {
                startWorkers(fleet, workers, origin, workerEnv);
            }
            fleet.awaitHealthy();
            String url = "http://127.0.0.1:" + fleet.port + "/api/v1/tasks";
            // A short warm-up (JIT, connection pools), its tasks counted like the others'.
            Autocannon.Result warmup = Autocannon.run(autocannon, url, KEY, BODY, Math.min(rate, 200), Chaos.full() ? 5 : 2, connections,
                    dir.resolve("warmup.json"));
            String loadBefore = loadAverage();
            // A request unanswered in 10 s is an error at full scale; CI's machines get 30 s (no timing is asserted there).
            Autocannon.Result main = Autocannon.run(autocannon, url, KEY, BODY, rate, seconds, connections, Chaos.full() ? 10 : 30,
                    results.resolve("load-main.json"));
            String loadDuring = loadAverage();

            // The search: steps down (or up) from the rate asked for until p99 is under the target, at scale full only.
            List<Autocannon.Result> steps = new ArrayList<>();
            Integer bestRate = null;
            if (Chaos.full()) {
                if (main.p99() < P99_TARGET_MS && main.failures() == 0) {
                    bestRate = rate;
                    for (int up : new int[]{rate * 3 / 2, rate * 2}) {
                        Autocannon.Result step = Autocannon.run(autocannon, url, KEY, BODY, up, stepSeconds, connections,
                                results.resolve("load-step-" + up + ".json"));
                        steps.add(step);
                        if (step.p99() >= P99_TARGET_MS || step.failures() > 0 || step.achieved() < up * 0.95) {
                            break;
                        }
                        bestRate = up;
                    }
                } else {
                    for (int down : new int[]{rate * 3 / 4, rate / 2, rate * 3 / 10, rate / 5, rate / 10}) {
                        Autocannon.Result step = Autocannon.run(autocannon, url, KEY, BODY, down, stepSeconds, connections,
                                results.resolve("load-step-" + down + ".json"));
                        steps.add(step);
                        if (step.p99() < P99_TARGET_MS && step.failures() == 0) {
                            bestRate = down;
                            break;
                        }
                    }
                }
            }

            // Every accepted task exists and reaches its stream (the reconciler enqueues any the coordinator could not).
            long accepted = warmup.twoXx() + main.twoXx() + steps.stream().mapToLong(Autocannon.Result::twoXx).sum();
            long rows = fleet.count("SELECT count(*) FROM tasks");
            await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE enqueued_at IS NULL") == 0);
            long lost = Math.max(0, accepted - rows);
            long extra = Math.max(0, rows - accepted);
            long completedWhileSubmitting = fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'");
            // Then the fleet works off the queue: every accepted task must be run and recorded.
            long drainFrom = System.nanoTime();
            if (!beside) {
                startWorkers(fleet, workers, origin, workerEnv);
            }
            if (workers > 0) {
                await().atMost(Duration.ofSeconds(Chaos.full() ? 300 : 120)).pollInterval(Duration.ofSeconds(1))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") >= rows);
            }
            long drainSeconds = Duration.ofNanos(System.nanoTime() - drainFrom).toSeconds();
            long completed = fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'");
            boolean coordinatorAlive = coordinator.isAlive();
            long took = Duration.ofNanos(System.nanoTime() - began).toSeconds();

            boolean achieved = main.achieved() >= rate * 0.95;
            boolean pass = main.failures() == 0 && main.timeouts() == 0 && lost == 0 && extra == 0 && coordinatorAlive
                    && (workers == 0 || completed == rows)
                    && (!Chaos.full() || achieved);
            StringBuilder search = new StringBuilder();
            for (Autocannon.Result step : steps) {
                search.append(search.isEmpty() ? "" : ",").append(String.format(Locale.ROOT, "%d/s:p99=%.0fms%s", step.rate(),
                        step.p99(), step.failures() > 0 ? ":errors=" + step.failures() : ""));
            }
            Chaos.report("load", String.format(Locale.ROOT,
                    "rate=%d/s for %ds (%d requests, steady over %d connections, autocannon) achieved=%.0f/s p50=%.0fms p99=%.0fms max=%.0fms "
                            + "2xx=%d non2xx=%d socket_errors=%d timeouts=%d tasks: accepted=%d rows=%d lost=%d extra=%d "
                            + "workers=%d (%s) completed=%d (while submitting %d; all by %ds after) %s load_before=%s load_after=%s took=%ds",
                    rate, seconds, main.total(), main.lanes(), main.achieved(), main.p50(), main.p99(), main.max(), main.twoXx(),
                    main.non2xx(), main.errors(), main.timeouts(), accepted, rows, lost, extra, workers,
                    beside ? "beside the submits" : "after the submits", completed, completedWhileSubmitting, drainSeconds,
                    Chaos.full() ? "highest_rate_p99<50ms=" + (bestRate == null ? "none>=" + rate / 10 : bestRate + "/s")
                            + " search[" + search + "]" : "search=full-scale-only",
                    loadBefore, loadDuring, took), pass);

            assertThat(coordinatorAlive).as("the coordinator is alive").isTrue();
            assertThat(main.non2xx()).as("non-2xx answers (see " + results.resolve("load-main.json") + ")").isZero();
            assertThat(main.errors()).as("socket errors").isZero();
            assertThat(lost).as("accepted tasks without a row").isZero();
            assertThat(extra).as("rows without an accepted request").isZero();
            if (workers > 0) {
                assertThat(completed).as("accepted tasks run and recorded").isEqualTo(rows);
            }
            if (Chaos.full()) {
                assertThat(main.achieved()).as("requests per second achieved").isGreaterThanOrEqualTo(rate * 0.95);
            }
        }
    }

    private static void startWorkers(Fleet fleet, int workers, Path origin, Map<String, String> workerEnv) throws java.io.IOException {
        for (int w = 0; w < workers; w++) {
            fleet.startWorker("load-w" + w, origin.resolveSibling("work"), origin, workerEnv);
        }
        if (workers > 0) {
            fleet.awaitWorkers(workers);
        }
    }

    /** The 1-minute load average, e.g. {@code 3.12} (the figures mean little without it). */
    static String loadAverage() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).split(" ")[0];
        } catch (java.io.IOException e) {
            return "n/a";
        }
    }
}
