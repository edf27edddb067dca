package dev.kage.e2e.chaos;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.e2e.Fleet;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chaos scenario 3, Postgres outage: the coordinator and three workers reach Postgres through a TCP proxy, which is cut
 * mid-run for {@code outage_seconds} (12 at scale ci, 60 at full) while the workers keep running jobs and a prober
 * keeps calling the API. Every fifth job fails on purpose (exit 3, not retried), so error rows are written during
 * the outage too. No result or error row may be lost; the routes that need Postgres answer 503 while it is away
 * (never 500, never a hang), the ones that do not keep answering, and nothing answers 5xx once it is back.
 */
class PostgresOutageChaosIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final int WORKERS = 3;
    private static final int SLOTS = 4;
    private static final double JOB_SECONDS = 2;
    /** Routes that need Postgres: they must answer 503 while it is away. */
    private static final List<String> NEED_POSTGRES = List.of("submit", "batch", "task", "list", "report", "health");
    /** How long after the proxy forwards again a 503 is still fair (the pools reconnect). */
    private static final Duration RECOVERY = Duration.ofSeconds(10);

    private static final int BEFORE = 0;
    private static final int DURING = 1;
    private static final int RECONNECTING = 2;
    private static final int AFTER = 3;

    @TempDir
    Path dir;

    private static int phase(long now, long cutAt, long restoredAt) {
        return now < cutAt ? BEFORE : now < restoredAt ? DURING : now < restoredAt + RECOVERY.toNanos() ? RECONNECTING : AFTER;
    }

    /** One route's call; the prober files its answer under the phase it was made in. */
    private interface Probe {
        Api.Answer call(Api api) throws Exception;
    }

    @Test
    void aPostgresOutageLosesNoRowAndTheApiAnswers503NotA500() throws Exception {
        int outage = Chaos.intSetting("outage_seconds", 12, 60);
        int jobs = Chaos.intSetting("outage_jobs", WORKERS * SLOTS * (int) Math.ceil((outage + 12) / (JOB_SECONDS + 0.5)),
                WORKERS * SLOTS * (int) Math.ceil((outage + 12) / (JOB_SECONDS + 0.5)));
        Path origin = Chaos.createRepo(dir.resolve("origin"));
        Path runs = Files.createDirectories(dir.resolve("runs"));
        Files.writeString(runs.resolve("fail"), "on"); // the fixture honours fail=<code> while this file exists
        Path agents = Chaos.recordingAgents(dir.resolve("agents.yml"), "rec");
        URI db = URI.create(TestServices.databaseUrl());
        try (TcpProxy proxy = TcpProxy.start(db.getHost(), db.getPort() > 0 ? db.getPort() : 5432);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "chaos-postgres-outage"))) {
            Map<String, String> env = new HashMap<>();
            env.put("KAGE_AGENTS_FILE", agents.toString());
            env.put("E2E_LOG_DIR", runs.toString());
            env.put("MAX_REQUESTS_PER_MINUTE", "1000000");
            env.put("DATABASE_URL", TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy));
            Map<String, String> workerEnv = new HashMap<>(env);
            workerEnv.put("MAX_PARALLEL_CLIS", Integer.toString(SLOTS));
            Api api = new Api(fleet.port);
            long began = System.nanoTime();
            fleet.startCoordinator(env);
            List<Process> workers = new ArrayList<>();
            for (int w = 0; w < WORKERS; w++) {
                workers.add(fleet.startWorker("pg-w" + w, dir.resolve("work"), origin, workerEnv));
            }
            fleet.awaitHealthy();
            fleet.awaitWorkers(WORKERS);

            // A key kept in Postgres, so authentication itself needs the database once its cache entry lapses.
            Api.Answer created = api.post("setup", "/api/v1/keys", KEY,
                    "{\"tenant\": \"default\", \"name\": \"chaos\", \"scopes\": [\"submit\", \"read\"]}");
            assertThat(created.status()).as(created.body()).isEqualTo(201);
            String dbKey = JSON.readTree(created.body()).get("key").asText();

            List<String> taskIds = new ArrayList<>();
            int failing = 0;
            for (int from = 0; from < jobs; from += 100) {
                ObjectNode body = JSON.createObjectNode();
                var tasks = body.putArray("tasks");
                for (int i = from; i < Math.min(jobs, from + 100); i++) {
                    boolean fails = i % 5 == 4;
                    failing += fails ? 1 : 0;
                    String description = "outage job " + i + " sleep=" + JOB_SECONDS + (fails ? " fail=3" : "");
                    tasks.addObject().put("description", description).put("repo", origin.toString())
                            .putArray("cli_assignments").addObject().put("cli_name", "rec").put("timeout", 120);
                }
                Api.Answer answer = api.post("setup", "/api/v1/tasks:batch", KEY, body.toString());
                assertThat(answer.status()).as(answer.body()).isEqualTo(202);
                JSON.readTree(answer.body()).get("tasks").forEach(t -> taskIds.add(t.get("task_id").asText()));
            }
            Path runsLog = runs.resolve("runs.log");
            await().atMost(Duration.ofSeconds(60)).until(() -> Chaos.runLines(runsLog, "end ").size() >= WORKERS * SLOTS);

            // The prober: every route in turn, before, during and after the outage, each answer filed by phase.
            AtomicBoolean probing = new AtomicBoolean(true);
            Api during = new Api(fleet.port);
            Api outside = new Api(fleet.port);
            Api recovering = new Api(fleet.port);
            Api boundary = new Api(fleet.port);
            long[] cutAt = {Long.MAX_VALUE};
            long[] restoredAt = {Long.MAX_VALUE};
            List<String> accepted = new ArrayList<>();
            String taskBody = "{\"description\": \"probe sleep=0.1\", \"repo\": \"" + origin
                    + "\", \"cli_assignments\": [{\"cli_name\": \"rec\", \"timeout\": 60}]}";
            // One thread per route, so a call that waits for the pool's connection timeout delays only its own route.
            Map<String, Probe> probes = new java.util.LinkedHashMap<>();
            int[] round = {0};
            probes.put("submit", phase -> {
                Api.Answer submit = phase.post("submit", "/api/v1/tasks", KEY, taskBody);
                if (submit.status() == 202) {
                    synchronized (accepted) {
                        accepted.add(JSON.readTree(submit.body()).get("task_id").asText());
                    }
                }
                return submit;
            });
            probes.put("batch", phase -> {
                Api.Answer batch = phase.post("batch", "/api/v1/tasks:batch", KEY, "{\"tasks\": [" + taskBody + "]}");
                if (batch.status() == 202) {
                    synchronized (accepted) {
                        accepted.add(JSON.readTree(batch.body()).at("/tasks/0/task_id").asText());
                    }
                }
                return batch;
            });
            probes.put("task", phase -> phase.get("task", "/api/v1/tasks/" + taskIds.get(round[0]++ % taskIds.size()), KEY));
            probes.put("list", phase -> phase.get("list", "/api/v1/tasks?limit=5", KEY));
            probes.put("report", phase -> phase.get("report", "/api/v1/reports/budget-violations?days=1", KEY));
            probes.put("health", phase -> phase.get("health", "/health", null));
            probes.put("liveness", phase -> phase.get("liveness", "/health/liveness", null));
            probes.put("queues", phase -> phase.get("queues", "/api/v1/queues", KEY));
            probes.put("db-key", phase -> phase.get("db-key", "/api/v1/workers", dbKey));
            List<Thread> probers = new ArrayList<>();
            probes.forEach((label, probe) -> probers.add(Thread.ofPlatform().name("chaos-probe-" + label).start(() -> {
                Api unfiled = new Api(fleet.port);
                boolean submits = label.equals("submit") || label.equals("batch");
                while (probing.get()) {
                    if (submits && restoredAt[0] != Long.MAX_VALUE
                            && System.nanoTime() - restoredAt[0] > RECOVERY.toNanos() + Duration.ofSeconds(3).toNanos()) {
                        // Postgres is back and the fleet recovered: new tasks now would only lengthen the drain waited
                        // for next (on a slow machine, without end); the read probes go on until then.
                        await().pollDelay(Duration.ofMillis(250)).until(() -> true);
                        continue;
                    }
                    int before = phase(System.nanoTime(), cutAt[0], restoredAt[0]);
                    try {
                        Api.Answer answer = probe.call(unfiled);
                        int after = phase(System.nanoTime(), cutAt[0], restoredAt[0]);
                        // A call under way when Postgres went or came back is filed apart: either answer is fair.
                        Api phase = before != after ? boundary : switch (before) {
                            case DURING -> during;
                            case RECONNECTING -> recovering;
                            default -> outside;
                        };
                        phase.file(label, answer);
                    } catch (InterruptedException e) {
                        return;
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                    await().pollDelay(Duration.ofMillis(label.equals("submit") || label.equals("batch") ? 500 : 250))
                            .until(() -> true);
                }
            })));

            await().pollDelay(Duration.ofSeconds(3)).until(() -> true);
            long endsBefore = Chaos.runLines(runsLog, "end ").size() + Chaos.runLines(runsLog, "fail ").size();
            cutAt[0] = System.nanoTime();
            proxy.cut();
            await().pollDelay(Duration.ofSeconds(outage)).atMost(Duration.ofSeconds(outage + 5)).until(() -> true);
            long endsDuring = Chaos.runLines(runsLog, "end ").size() + Chaos.runLines(runsLog, "fail ").size() - endsBefore;
            restoredAt[0] = System.nanoTime();
            proxy.restore();

            await().atMost(Duration.ofSeconds(240 + jobs * 6L / 10)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status IN ('queued', 'running')") == 0
                            && System.nanoTime() > restoredAt[0] + RECOVERY.toNanos() + Duration.ofSeconds(3).toNanos());
            probing.set(false);
            for (Thread prober : probers) {
                prober.join(Duration.ofSeconds(30));
            }
            long took = Duration.ofNanos(System.nanoTime() - began).toSeconds();

            long acceptedProbes = accepted.size();
            long results = fleet.count("SELECT count(*) FROM execution_results WHERE task_id = ANY(?::uuid[])",
                    (Object) taskIds.toArray(String[]::new));
            long errorRows = fleet.count("SELECT count(*) FROM task_errors WHERE task_id = ANY(?::uuid[])",
                    (Object) taskIds.toArray(String[]::new));
            long completed = fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed' AND id = ANY(?::uuid[])",
                    (Object) taskIds.toArray(String[]::new));
            long failed = fleet.count("SELECT count(*) FROM tasks WHERE status = 'failed' AND id = ANY(?::uuid[])",
                    (Object) taskIds.toArray(String[]::new));
            long acceptedFound = fleet.count("SELECT count(*) FROM tasks WHERE id = ANY(?::uuid[])",
                    (Object) accepted.toArray(String[]::new));
            long outbox = fleet.redis.redis().llen(fleet.redis.keys().outbox("rec"));
            long deadWorkers = workers.stream().filter(p -> !p.isAlive()).count();
            String workerLogs = fleet.log("pg-w0") + fleet.log("pg-w1") + fleet.log("pg-w2");
            boolean workersSawIt = workerLogs.contains("Postgres unavailable");

            long lostRows = (jobs - results) + (failing - errorRows);
            boolean mustAnswered503 = NEED_POSTGRES.stream().allMatch(label -> {
                Map<Integer, Long> statuses = during.of(label);
                return !statuses.isEmpty() && statuses.keySet().stream().allMatch(s -> s == 503);
            });
            long errors500 = during.serverErrorsBut503() + outside.serverErrorsBut503() + recovering.serverErrorsBut503()
                    + boundary.serverErrorsBut503() + api.serverErrors();
            long timeouts = during.count(s -> s < 0) + outside.count(s -> s < 0) + recovering.count(s -> s < 0)
                    + boundary.count(s -> s < 0);
            long outside5xx = outside.serverErrors();
            boolean pass = lostRows == 0 && results == jobs && errorRows == failing && completed == jobs - failing
                    && failed == failing && acceptedFound == acceptedProbes && outbox == 0 && mustAnswered503 && errors500 == 0
                    && timeouts == 0 && outside5xx == 0 && deadWorkers == 0 && endsDuring > 0 && workersSawIt;
            Chaos.report("postgres-outage", String.format(
                    "jobs=%d workers=%d outage=%ds runs_ended_during_outage=%d lost_rows=%d (results %d/%d, error rows %d/%d) "
                            + "duplicated=n/a tasks completed=%d failed=%d accepted_probe_tasks=%d/%d outbox_left=%d "
                            + "5xx_but_503=%d 503_during[%s] 503_while_reconnecting=%d 5xx_outside=%d straddling_calls=%d timeouts=%d "
                            + "503_slowest=%dms workers_died=%d took=%ds",
                    jobs, WORKERS, outage, endsDuring, lostRows, results, jobs, errorRows, failing, completed, failed,
                    acceptedFound, acceptedProbes, outbox, errors500, during.summary(), recovering.count(s -> s == 503), outside5xx,
                    boundary.calls(), timeouts, during.slowestMillis(), deadWorkers, took), pass);

            assertThat(endsDuring).as("runs ended while Postgres was away").isPositive();
            assertThat(workersSawIt).as("the workers noticed the outage").isTrue();
            assertThat(results).as("result rows").isEqualTo(jobs);
            assertThat(errorRows).as("error rows").isEqualTo(failing);
            assertThat(completed).isEqualTo(jobs - failing);
            assertThat(failed).isEqualTo(failing);
            assertThat(acceptedFound).as("every task the API accepted exists").isEqualTo(acceptedProbes);
            assertThat(outbox).as("rows still waiting in the outbox").isZero();
            assertThat(errors500).as("5xx other than 503: during " + during.summary() + " / outside " + outside.summary()
                    + " / reconnecting " + recovering.summary()).isZero();
            assertThat(mustAnswered503).as("routes that need Postgres answer 503 while it is away: " + during.summary()).isTrue();
            assertThat(timeouts).as("calls that got no answer in 10 s").isZero();
            assertThat(outside5xx).as("5xx outside the outage: " + outside.summary()).isZero();
            assertThat(deadWorkers).as("workers that died").isZero();
        }
    }
}
