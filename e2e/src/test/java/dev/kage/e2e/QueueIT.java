package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.testing.PrivateRedis;
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
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The queue under faults, with a coordinator and worker processes driven through HTTP. The fixture
 * agent ({@code fixtures/record-run.sh}) logs each run's start and end and writes OVERLAP when a run
 * of a job starts while an earlier run of the same job is still alive.
 */
class QueueIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final Path FIXTURE = Fleet.ROOT.resolve("e2e/src/test/resources/fixtures/record-run.sh");

    @TempDir
    Path dir;
    private Path origin;
    private Path runs;
    private Path agents;

    @BeforeEach
    void setUp() throws Exception {
        origin = FleetIT.createRepo(dir.resolve("origin"));
        runs = Files.createDirectories(dir.resolve("runs"));
        agents = dir.resolve("agents.yml");
        StringBuilder yaml = new StringBuilder("agents:\n");
        for (String name : List.of("rec-a", "rec-b")) {
            yaml.append("  ").append(name).append(":\n")
                    .append("    argv: [\"/bin/bash\", \"").append(FIXTURE).append("\", \"{task_id}/{agent}\", \"{prompt}\"]\n")
                    .append("    output: claude-json\n")
                    .append("    env: [E2E_LOG_DIR]\n")
                    .append("    retry: {max_attempts: 3, exit_codes: [75]}\n");
        }
        Files.writeString(agents, yaml);
    }

    @Test
    void jobsOfAWorkerKilledMidRunAreReclaimedAndNoneRunsTwiceAtOnce() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "kill-worker"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Map<String, String> workerEnv = env(Map.of("MAX_PARALLEL_CLIS", "8"));
            Process w1 = fleet.startWorker("kill-w1", dir.resolve("work"), origin, workerEnv);
            fleet.startWorker("kill-w2", dir.resolve("work"), origin, workerEnv);
            List<String> ids = new ArrayList<>();
            for (int i = 0; i < 100; i++) {
                ids.add(submit(fleet, "job " + i + " sleep=0.4", List.of("rec-a", "rec-b"), Map.of()));
            }
            await().atMost(Duration.ofSeconds(60)).until(() -> lines("end ") >= 40);
            w1.destroyForcibly();
            assertThat(w1.waitFor(10, TimeUnit.SECONDS)).isTrue();
            fleet.startWorker("kill-w1-restarted", "kill-w1", dir.resolve("work"), origin, workerEnv);

            await().atMost(Duration.ofSeconds(150)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 100);

            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
            assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE status = 'completed'")).isEqualTo(200);
            assertThat(fleet.count("SELECT count(DISTINCT job_id) FROM execution_results")).isEqualTo(200);
            for (String id : ids) {
                for (String agent : List.of("rec-a", "rec-b")) {
                    assertThat(read(runs.resolve("runs.log"))).contains("end " + id + "/" + agent + " ");
                }
            }
            assertThat(fleet.log("kill-w2") + fleet.log("kill-w1-restarted")).contains("Reclaimed");
            // The killed worker's budget holds came back (a reclaimed job's new hold replaces the dead one's): nothing
            // stays reserved. The pool holds at least what the results say was used, and at most what every run that
            // finished used (15 tokens each): a run whose worker was killed after settling but before its result row
            // was written ran again, and both runs were spent.
            String month = fleet.redis.keys().tenantBudget("default", dev.kage.budget.Period.MONTH.id(java.time.Instant.now()));
            assertThat(fleet.redis.redis().hget(month, "reserved")).isEqualTo("0");
            long used = Long.parseLong(fleet.redis.redis().hget(month, "used"));
            assertThat(used).isGreaterThanOrEqualTo(fleet.count(
                    "SELECT sum(tokens_in + tokens_out + cache_read_tokens + cache_write_tokens) FROM execution_results"))
                    .isLessThanOrEqualTo(15L * lines("end "));
        }
    }

    @Test
    void aDeadWorkersStaleJobsTakeTheSlotsThatFreeBeforeNewerJobs() throws Exception {
        // A killed worker's entries stay pending under its name. Once stale (idle past the reclaim time, its heartbeat
        // expired) they have waited longer than anything in the streams, so the slots that free go to them first. CI
        // saw them get only a share of the slots, a few seconds out of each reclaim period, and wait minutes behind a
        // backlog of newer jobs.
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "stale-first"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Process doomed = fleet.startWorker("stale-w1", dir.resolve("work"), origin, env(Map.of("MAX_PARALLEL_CLIS", "4")));
            List<String> stale = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                stale.add(submit(fleet, "stale " + i + " sleep=6 rerun=0.5", List.of("rec-a"), Map.of()) + "/rec-a");
            }
            await().atMost(Duration.ofSeconds(60)).until(() -> lines("start ") == 4);
            doomed.destroyForcibly();
            assertThat(doomed.waitFor(10, TimeUnit.SECONDS)).isTrue();
            List<String> fresh = new ArrayList<>();
            for (int i = 0; i < 30; i++) {
                fresh.add(submit(fleet, "fresh " + i + " sleep=0.2", List.of("rec-a"), Map.of()) + "/rec-a");
            }
            dev.kage.queue.JobQueue queue = new dev.kage.queue.JobQueue(fleet.redis.keys(), fleet.redis.redis());
            await().atMost(Duration.ofSeconds(45)).pollInterval(Duration.ofMillis(500))
                    .until(() -> fleet.redis.redis().exists(fleet.redis.keys().worker("stale-w1")) == 0
                            && queue.stale("rec-a", Duration.ofSeconds(15), 10).size() == 4);
            // One slot: the order in which runs start is the order in which the slot went to their jobs. Its claim
            // loop takes newer jobs until its first reclaim pass (5 s after it starts) finds the stale ones.
            fleet.startWorker("stale-w2", dir.resolve("work"), origin, env(Map.of("MAX_PARALLEL_CLIS", "1")));
            await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 34);
            List<String> order = dev.kage.e2e.chaos.Chaos.runLines(runs.resolve("runs.log"), "start ").stream()
                    .skip(4).map(l -> l.split(" ")[1]).toList();
            int first = java.util.stream.IntStream.range(0, order.size()).filter(i -> stale.contains(order.get(i))).findFirst()
                    .orElseThrow();
            String labels = order.stream().map(job -> stale.contains(job) ? "S" : fresh.contains(job) ? "f" : "?")
                    .collect(java.util.stream.Collectors.joining());
            assertThat(order.subList(first, first + 4)).as("runs in start order, S stale, f fresh: %s", labels)
                    .containsExactlyInAnyOrderElementsOf(stale);
            assertThat(order.subList(first + 4, order.size())).as("runs in start order, S stale, f fresh: %s", labels)
                    .isNotEmpty().allMatch(fresh::contains);
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
        }
    }

    @Test
    void aJobRunningLongerThanTheReclaimIdleTimeOnALiveWorkerIsNotReclaimed() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "long-job"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            fleet.startWorker("long-w1", dir.resolve("work"), origin, env());
            fleet.startWorker("long-w2", dir.resolve("work"), origin, env());
            String id = submit(fleet, "long sleep=22", List.of("rec-a"), Map.of());
            JsonNode task = awaitFinal(fleet, id, Duration.ofSeconds(60));
            assertThat(task.get("status").asText()).isEqualTo("completed");
            assertThat(count("start " + id + "/rec-a ")).isEqualTo(1);
            assertThat(fleet.log("long-w1") + fleet.log("long-w2")).doesNotContain("Reclaimed");
        }
    }

    @Test
    void aPoisonJobGoesToTheDeadLettersAfterMaxDeliveriesAndCanBeReplayed() throws Exception {
        Files.writeString(runs.resolve("poison"), "on");
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "poison"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Map<String, String> workerEnv = env(Map.of("KAGE_MAX_DELIVERIES", "2"));
            String id = submit(fleet, "poison pill", List.of("rec-a"), Map.of());
            // Like a supervisor: restart the worker each time the poison kills it.
            Process worker = fleet.startWorker("poison-w0", "poison-w", dir.resolve("work"), origin, workerEnv);
            int restarts = 0;
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (deadLetters(fleet).isEmpty() && System.nanoTime() < deadline) {
                if (!worker.isAlive()) {
                    worker = fleet.startWorker("poison-w" + (++restarts), "poison-w", dir.resolve("work"), origin, workerEnv);
                }
                await().pollDelay(Duration.ofMillis(500)).until(() -> true);
            }
            JsonNode letters = deadLetters(fleet);
            assertThat(letters).hasSize(1);
            assertThat(letters.get(0).get("task_id").asText()).isEqualTo(id);
            assertThat(letters.get(0).get("reason").asText()).contains("delivered 2 times");
            assertThat(count("poison " + id + "/rec-a ")).isEqualTo(2);
            JsonNode failed = awaitFinal(fleet, id, Duration.ofSeconds(10));
            assertThat(failed.get("status").asText()).isEqualTo("failed");
            assertThat(failed.get("errors").toString()).contains("PoisonJobError");

            Files.delete(runs.resolve("poison"));
            if (!worker.isAlive()) {
                fleet.startWorker("poison-w-final", "poison-w", dir.resolve("work"), origin, workerEnv);
            }
            var replay = fleet.post("/api/v1/dead-letters/" + letters.get(0).get("id").asText() + "/replay", KEY, "");
            assertThat(replay.statusCode()).as(replay.body()).isEqualTo(202);
            assertThat(JSON.readTree(replay.body()).get("attempt").asInt()).isEqualTo(2);
            var again = fleet.post("/api/v1/dead-letters/" + letters.get(0).get("id").asText() + "/replay", KEY, "");
            assertThat(again.statusCode()).as("a letter is replayed once").isEqualTo(404);
            JsonNode done = awaitFinal(fleet, id, Duration.ofSeconds(60));
            assertThat(done.get("status").asText()).isEqualTo("completed");
            assertThat(fleet.query("SELECT attempt, status FROM execution_results WHERE task_id = ?::uuid ORDER BY attempt", id))
                    .containsExactly("1:failed", "2:completed");
            assertThat(deadLetters(fleet)).isEmpty();
            // Every state change went to kage:events, in order (the killed runs' starts are there too).
            assertThat(events(fleet, id)).containsSubsequence("task.submitted", "job.started", "job.started", "job.dead_lettered",
                    "job.replayed", "job.started", "job.finished");
        }
    }

    @Test
    void aFailedRunIsRetriedWithBackoffAndAFinalFailureIsRecorded() throws Exception {
        Files.writeString(runs.resolve("fail"), "on");
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "retry"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            fleet.startWorker("retry-w1", dir.resolve("work"), origin,
                    env(Map.of("KAGE_RETRY_BACKOFF_BASE", "1", "KAGE_RETRY_BACKOFF_MAX", "4")));
            String retried = submit(fleet, "flaky fail=75", List.of("rec-a"), Map.of());
            String hopeless = submit(fleet, "broken fail=3", List.of("rec-b"), Map.of());
            String exhausted = submit(fleet, "never recovers fail=75 always", List.of("rec-b"), Map.of());
            await().atMost(Duration.ofSeconds(30)).until(() -> count("fail " + retried + "/rec-a ") >= 2);
            Files.delete(runs.resolve("fail"));

            JsonNode ok = awaitFinal(fleet, retried, Duration.ofSeconds(60));
            assertThat(ok.get("status").asText()).isEqualTo("completed");
            assertThat(events(fleet, retried)).containsExactly("task.submitted", "job.started", "job.retry_scheduled",
                    "job.started", "job.retry_scheduled", "job.started", "job.finished");
            assertThat(fleet.query("SELECT attempt, status FROM execution_results WHERE task_id = ?::uuid", retried))
                    .containsExactly("3:completed");
            assertThat(fleet.query("SELECT error_type, retryable FROM task_errors WHERE task_id = ?::uuid ORDER BY id", retried))
                    .containsExactly("AgentError:t", "AgentError:t");

            JsonNode failed = awaitFinal(fleet, hopeless, Duration.ofSeconds(30));
            assertThat(failed.get("status").asText()).as("exit code 3 is not retryable").isEqualTo("failed");
            assertThat(count("start " + hopeless + "/rec-b ")).isEqualTo(1);
            assertThat(fleet.query("SELECT error_type, retryable FROM task_errors WHERE task_id = ?::uuid", hopeless))
                    .containsExactly("AgentError:f");

            // A retryable failure that never clears runs retry.max_attempts (3) times, then fails for good.
            JsonNode gaveUp = awaitFinal(fleet, exhausted, Duration.ofSeconds(60));
            assertThat(gaveUp.get("status").asText()).isEqualTo("failed");
            assertThat(count("start " + exhausted + "/rec-b ")).isEqualTo(3);
            assertThat(fleet.query("SELECT attempt, status FROM execution_results WHERE task_id = ?::uuid", exhausted))
                    .containsExactly("3:failed");
            assertThat(fleet.query("SELECT error_type FROM task_errors WHERE task_id = ?::uuid ORDER BY id", exhausted))
                    .containsExactly("AgentError", "AgentError", "AgentError");
            // The backoff: 1 s before attempt 2 and 2 s before attempt 3 (KAGE_RETRY_BACKOFF_BASE × 2^(attempt−2)), less
            // the 20 % jitter at most. Lower bounds only: a busy machine makes the waits longer, never shorter.
            List<Long> fails = times("fail " + exhausted + "/rec-b ");
            List<Long> starts = times("start " + exhausted + "/rec-b ");
            assertThat(starts.get(1) - fails.get(0)).as("ms before attempt 2").isGreaterThanOrEqualTo(800);
            assertThat(starts.get(2) - fails.get(1)).as("ms before attempt 3").isGreaterThanOrEqualTo(1_600);
        }
    }

    /** The types of the task's events in {@code kage:events}, oldest first. */
    private static List<String> events(Fleet fleet, String taskId) {
        return fleet.redis.redis().xrange(fleet.redis.keys().events(), io.lettuce.core.Range.create("-", "+")).stream()
                .filter(m -> taskId.equals(m.getBody().get("task_id"))).map(m -> m.getBody().get("type")).toList();
    }

    /** The times (ms) of the run log's lines that start with {@code prefix}, in order. */
    private List<Long> times(String prefix) throws Exception {
        return read(runs.resolve("runs.log")).lines().filter(l -> l.startsWith(prefix))
                .map(l -> Long.parseLong(l.substring(l.lastIndexOf(' ') + 1))).toList();
    }

    @Test
    void cancelStopsARunningAgentAndKeepsAQueuedJobFromStarting() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "cancel"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            fleet.startWorker("cancel-w1", dir.resolve("work"), origin, env(Map.of("MAX_PARALLEL_CLIS", "1")));
            String running = submit(fleet, "slow sleep=60 grandchild", List.of("rec-a"), Map.of());
            String queued = submit(fleet, "later sleep=1", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(30)).until(() -> count("start " + running + "/rec-a ") == 1);
            // Its start reaches Postgres with the outcome writer's next group commit: within 10 ms, later on a busy machine.
            await().atMost(Duration.ofSeconds(10)).until(() ->
                    fleet.query("SELECT status FROM tasks WHERE id = ?::uuid", running).equals(List.of("running")));

            var cancelQueued = fleet.post("/api/v1/tasks/" + queued + "/cancel", KEY, "");
            assertThat(cancelQueued.statusCode()).as(cancelQueued.body()).isEqualTo(202);
            var cancelRunning = fleet.post("/api/v1/tasks/" + running + "/cancel", KEY, "");
            assertThat(cancelRunning.statusCode()).isEqualTo(202);
            assertThat(JSON.readTree(cancelRunning.body()).get("previous_status").asText()).isEqualTo("running");

            await().atMost(Duration.ofSeconds(20)).until(() ->
                    fleet.query("SELECT status FROM execution_results WHERE task_id = ?::uuid", running).equals(List.of("cancelled"))
                            && fleet.query("SELECT status FROM execution_results WHERE task_id = ?::uuid", queued)
                            .equals(List.of("cancelled")));
            JsonNode view = JSON.readTree(fleet.get("/api/v1/tasks/" + running, KEY).body());
            assertThat(view.get("status").asText()).isEqualTo("cancelled");
            assertThat(view.get("budget").get("tokens_reserved").asLong()).isZero();
            assertThat(count("end " + running + "/rec-a ")).as("the running agent was killed").isZero();
            // The whole tree: the process the agent started beside itself too, not only the agent.
            long grandchild = Long.parseLong(read(runs.resolve((running + "/rec-a").replaceAll("[^A-Za-z0-9._-]", "_")
                    + ".grandchild")).strip());
            await().atMost(Duration.ofSeconds(15)).until(() ->
                    !ProcessHandle.of(grandchild).map(ProcessHandle::isAlive).orElse(false));
            assertThat(count("start " + queued + "/rec-a ")).as("the queued job never started").isZero();
            assertThat(fleet.post("/api/v1/tasks/" + running + "/cancel", KEY, "").statusCode()).isEqualTo(409);
            assertThat(events(fleet, running)).containsSubsequence("task.submitted", "job.started", "task.cancelled", "job.finished");
            assertThat(events(fleet, queued)).containsSubsequence("task.submitted", "task.cancelled", "job.finished")
                    .doesNotContain("job.started");
        }
    }

    /**
     * A dead worker's job is reclaimed while a backlog keeps every slot of the live worker busy: it takes the next slot
     * that frees instead of waiting for one free at the instant the reclaimer looks (which under a backlog never is).
     */
    @Test
    void aDeadWorkersJobIsReclaimedAheadOfABacklogThatKeepsEverySlotBusy() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "reclaim-backlog"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Map<String, String> oneSlot = env(Map.of("MAX_PARALLEL_CLIS", "1"));
            Process dying = fleet.startWorker("backlog-dying", dir.resolve("work"), origin, oneSlot);
            String orphan = submit(fleet, "orphan sleep=30 rerun=1", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(60)).until(() -> count("start " + orphan + "/rec-a ") == 1);
            dying.destroyForcibly();
            assertThat(dying.waitFor(10, TimeUnit.SECONDS)).isTrue();
            // 80 jobs of 1 s for one slot: 80 s of backlog, always one of them ready when the slot frees.
            List<String> backlog = new ArrayList<>();
            for (int i = 0; i < 80; i++) {
                backlog.add(submit(fleet, "backlog " + i + " sleep=1", List.of("rec-a"), Map.of()));
            }
            fleet.startWorker("backlog-live", dir.resolve("work"), origin, oneSlot);

            // Reclaimable once the dead worker's heartbeat lapsed (20 s) and the entry is idle 15 s; then it runs 1 s.
            awaitFinal(fleet, orphan, Duration.ofSeconds(120));
            long backlogDone = fleet.count("SELECT count(*) FROM execution_results WHERE status = 'completed'"
                    + " AND task_id::text = ANY(string_to_array(?, ','))", String.join(",", backlog));
            assertThat(fleet.log("backlog-live")).contains("Reclaimed");
            assertThat(backlogDone).as("backlog jobs done before the reclaimed job finished").isLessThan(70);
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
        }
    }

    @Test
    void sigtermHandsARunningJobBackAndAnotherWorkerTakesItAtOnce() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "handback"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Process w1 = fleet.startWorker("handback-w1", dir.resolve("work"), origin,
                    env(Map.of("KAGE_SHUTDOWN_GRACE_SECONDS", "1")));
            String id = submit(fleet, "handed over sleep=6", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(30)).until(() -> count("start " + id + "/rec-a ") == 1);
            fleet.startWorker("handback-w2", dir.resolve("work"), origin, env());
            w1.destroy();
            assertThat(w1.waitFor(40, TimeUnit.SECONDS)).isTrue();
            assertThat(fleet.log("handback-w1")).contains("handed back to the queue");

            JsonNode done = awaitFinal(fleet, id, Duration.ofSeconds(14));
            assertThat(done.get("status").asText()).isEqualTo("completed");
            assertThat(done.get("agents").get(0).get("worker").asText()).isEqualTo("handback-w2");
            assertThat(count("start " + id + "/rec-a ")).isEqualTo(2);
            assertThat(fleet.log("handback-w2")).doesNotContain("Reclaimed");
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
        }
    }

    @Test
    void sigtermLetsARunningJobFinishWithinTheGraceAndClaimsNothingMore() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "grace"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Process w1 = fleet.startWorker("grace-w1", dir.resolve("work"), origin,
                    env(Map.of("KAGE_SHUTDOWN_GRACE_SECONDS", "30", "MAX_PARALLEL_CLIS", "1")));
            // Long enough that the backlog and the SIGTERM come while it runs, on a slow machine too; well within the grace.
            String running = submit(fleet, "finishes in the grace sleep=10", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(30)).until(() -> count("start " + running + "/rec-a ") == 1);
            // A backlog behind it: the slot it frees must not take one of these once the worker is stopping.
            List<String> backlog = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                backlog.add(submit(fleet, "backlog " + i, List.of("rec-a"), Map.of()));
            }
            w1.destroy();
            assertThat(w1.waitFor(60, TimeUnit.SECONDS)).isTrue();

            JsonNode finished = awaitFinal(fleet, running, Duration.ofSeconds(10));
            assertThat(finished.get("status").asText()).isEqualTo("completed");
            assertThat(finished.get("agents").get(0).get("worker").asText()).as("finished where it ran").isEqualTo("grace-w1");
            assertThat(count("start " + running + "/rec-a ")).isEqualTo(1);
            assertThat(fleet.log("grace-w1")).doesNotContain("handed back");
            for (String id : backlog) {
                assertThat(count("start " + id + "/rec-a ")).as("nothing claimed after SIGTERM").isZero();
            }

            fleet.startWorker("grace-w2", dir.resolve("work"), origin, env());
            for (String id : backlog) {
                JsonNode done = awaitFinal(fleet, id, Duration.ofSeconds(60));
                assertThat(done.get("status").asText()).isEqualTo("completed");
                assertThat(done.get("agents").get(0).get("worker").asText()).isEqualTo("grace-w2");
            }
        }
    }

    @Test
    void underABacklogAWorkerStartsHighPriorityJobsFirstWithoutStarvingTheOthers() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "priority"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            // The backlog is there before any worker: 10 of each priority, submitted low first, high last.
            java.util.Map<String, String> priorityOf = new java.util.HashMap<>();
            java.util.Map<String, List<String>> submitted = new java.util.LinkedHashMap<>();
            for (String priority : List.of("low", "normal", "high")) {
                for (int i = 0; i < 10; i++) {
                    ObjectNode body = JSON.createObjectNode().put("description", priority + " " + i + " sleep=0.05")
                            .put("repo", origin.toString()).put("priority", priority);
                    body.putArray("cli_assignments").addObject().put("cli_name", "rec-a").put("timeout", 120);
                    var response = fleet.post("/api/v1/tasks", KEY, body.toString());
                    assertThat(response.statusCode()).as(response.body()).isEqualTo(202);
                    String id = JSON.readTree(response.body()).get("task_id").asText();
                    priorityOf.put(id, priority);
                    submitted.computeIfAbsent(priority, p -> new ArrayList<>()).add(id);
                }
            }
            fleet.startWorker("priority-w1", dir.resolve("work"), origin, env(Map.of("MAX_PARALLEL_CLIS", "1")));
            await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 30);

            List<String> order = read(runs.resolve("runs.log")).lines().filter(l -> l.startsWith("start "))
                    .map(l -> l.split(" ")[1].replace("/rec-a", "")).toList();
            assertThat(order).hasSize(30);
            for (String priority : List.of("low", "normal", "high")) {
                assertThat(order.stream().filter(id -> priority.equals(priorityOf.get(id))).toList())
                        .as("first in, first out within " + priority).isEqualTo(submitted.get(priority));
            }
            List<String> first10 = order.subList(0, 10).stream().map(priorityOf::get).toList();
            assertThat(first10.stream().filter("high"::equals).count()).as("high goes first: " + first10).isGreaterThanOrEqualTo(6);
            assertThat(first10).as("normal is not starved by high").contains("normal");
            assertThat(order.stream().map(priorityOf::get).toList().subList(0, 15)).as("nor low").contains("low");
            java.util.function.ToIntFunction<String> lastOf = priority -> order.stream().map(priorityOf::get).toList()
                    .lastIndexOf(priority);
            assertThat(lastOf.applyAsInt("high")).isLessThan(lastOf.applyAsInt("normal"));
            assertThat(lastOf.applyAsInt("normal")).isLessThan(lastOf.applyAsInt("low"));
        }
    }

    @Test
    void aRedisRestartMidRunLosesNoJob() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis redis = PrivateRedis.start(true);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "redis-restart"))) {
            Map<String, String> onPrivate = env(Map.of("REDIS_URL", redis.url()));
            Process coordinator = fleet.startCoordinator(onPrivate);
            fleet.awaitHealthy();
            Process w1 = fleet.startWorker("redis-w1", dir.resolve("work"), origin, onPrivate);
            Process w2 = fleet.startWorker("redis-w2", dir.resolve("work"), origin, onPrivate);
            List<String> ids = new ArrayList<>();
            for (int i = 0; i < 30; i++) {
                ids.add(submit(fleet, "through a restart " + i + " sleep=0.5", List.of("rec-a"), Map.of()));
            }
            await().atMost(Duration.ofSeconds(60)).until(() -> lines("end ") >= 5);
            long restartedAt = System.currentTimeMillis();
            redis.stop();
            redis.restart();
            // The coordinator takes work again after the restart (retrying while its connection comes back).
            for (int i = 0; i < 5; i++) {
                String description = "after the restart " + i + " sleep=0.1";
                ids.add(await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(500))
                        .until(() -> trySubmit(fleet, description), java.util.Optional::isPresent).orElseThrow());
            }
            await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 35);
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
            assertThat(fleet.count("SELECT count(*) FROM execution_results")).isEqualTo(35);
            // Nobody crashed or restarted; each process's log says it reconnected (a restart this short is bridged by
            // the clients' reconnect: the claim loops' own "stops answering" lines come with longer outages).
            assertThat(List.of(coordinator, w1, w2)).allMatch(Process::isAlive);
            for (String log : List.of("coordinator", "redis-w1", "redis-w2")) {
                assertThat(fleet.log(log)).as(log).contains("Reconnected to");
            }
            long startedAfter = read(runs.resolve("runs.log")).lines().filter(l -> l.startsWith("start "))
                    .filter(l -> Long.parseLong(l.substring(l.lastIndexOf(' ') + 1)) > restartedAt).count();
            assertThat(startedAfter).as("jobs were still being claimed after the restart").isPositive();
        }
    }

    @Test
    void aRunningJobThatARestartedRedisLostStopsThereAndRunsAgainNeverTwiceAtOnce() throws Exception {
        // A Redis without persistence comes back empty: the running job's entry is pending nowhere. Its worker's next
        // beat stops it; the coordinator enqueues it again only after JobQueue.LOST_ENTRY_GRACE, so the two runs never
        // overlap (the fixture writes OVERLAP when a run starts while another of the same job is alive).
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "redis-lost"))) {
            Map<String, String> onPrivate = env(Map.of("REDIS_URL", redis.url()));
            fleet.startCoordinator(onPrivate);
            fleet.awaitHealthy();
            fleet.startWorker("lost-w1", dir.resolve("work"), origin, onPrivate);
            fleet.startWorker("lost-w2", dir.resolve("work"), origin, onPrivate);
            String id = submit(fleet, "lost with Redis sleep=12 rerun=1", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(60)).until(() -> count("start " + id + "/rec-a ") == 1);
            redis.stop();
            redis.restart();
            JsonNode task = awaitFinal(fleet, id, Duration.ofSeconds(120));
            assertThat(task.get("status").asText()).isEqualTo("completed");
            // On failure, what a CI log needs to tell a late stop from an early enqueue.
            String story = story(fleet, "lost-w1", "lost-w2");
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).as(story).isEmpty();
            assertThat(count("start " + id + "/rec-a ")).as("the lost run, then one more").isEqualTo(2);
            assertThat(count("end " + id + "/rec-a ")).as("the lost run was stopped before its end").isEqualTo(1);
            assertThat(fleet.log("lost-w1") + fleet.log("lost-w2")).contains("pending nowhere (Redis lost it)");
            assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE task_id = '" + id + "'")).isEqualTo(1);
        }
    }

    /**
     * A Redis restarted from a snapshot taken before the job's delivery (as with an AOF that lost its last second) has
     * the entry back, undelivered, while its first run goes on. The worker that reads
     * it as new waits until that Redis has been up for JobQueue.LOST_ENTRY_GRACE (by then the first worker's beat has
     * found the entry taken and stopped the first run), looks for its outcome, and only then runs it. The first worker has
     * one slot, so the second worker is the one that reads it.
     */
    @Test
    void anEntryARestartedRedisDeliversAgainToAnotherWorkerWaitsUntilItsFirstRunHasStopped() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "redis-snapshot-other"))) {
            Map<String, String> onPrivate = env(Map.of("REDIS_URL", redis.url()));
            String id = submitThenSnapshot(fleet, redis, onPrivate);
            fleet.startWorker("snap-w1", dir.resolve("work"), origin, env(Map.of("REDIS_URL", redis.url(), "MAX_PARALLEL_CLIS", "1")));
            await().atMost(Duration.ofSeconds(60)).until(() -> count("start " + id + "/rec-a ") == 1);
            fleet.startWorker("snap-w2", dir.resolve("work"), origin, onPrivate);
            awaitLogged(fleet, "snap-w2", "serving");
            redis.stop();
            redis.restart(); // from the snapshot: the entry is back, its delivery gone
            JsonNode task = awaitFinal(fleet, id, Duration.ofSeconds(120));
            String story = story(fleet, "snap-w1", "snap-w2");
            assertThat(task.get("status").asText()).as(story).isEqualTo("completed");
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).as(story).isEmpty();
            assertThat(fleet.log("snap-w2")).as(story).contains("may have been delivered before it started");
            assertThat(count("start " + id + "/rec-a ")).as(story).isEqualTo(2);
            assertThat(count("end " + id + "/rec-a ")).as("the first run was stopped before its end" + story).isEqualTo(1);
            assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE task_id = '" + id + "'")).isEqualTo(1);
        }
    }

    /**
     * As above, but the worker that runs the job reads its entry as new again itself (it has a free slot): the run goes
     * on, and the new delivery is not run beside it.
     */
    @Test
    void anEntryARestartedRedisDeliversAgainToTheWorkerRunningItIsNotRunTwice() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "redis-snapshot-same"))) {
            Map<String, String> onPrivate = env(Map.of("REDIS_URL", redis.url()));
            String id = submitThenSnapshot(fleet, redis, onPrivate);
            fleet.startWorker("snap-w3", dir.resolve("work"), origin, env(Map.of("REDIS_URL", redis.url(), "MAX_PARALLEL_CLIS", "2")));
            await().atMost(Duration.ofSeconds(60)).until(() -> count("start " + id + "/rec-a ") == 1);
            redis.stop();
            redis.restart();
            JsonNode task = awaitFinal(fleet, id, Duration.ofSeconds(120));
            String story = story(fleet, "snap-w3");
            assertThat(task.get("status").asText()).as(story).isEqualTo("completed");
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).as(story).isEmpty();
            // Read again while the run is listed here (most often), or after its beat had found it pending nowhere and
            // stopped it (then held like any entry the restarted Redis may have delivered before).
            assertThat(fleet.log("snap-w3")).as(story).containsAnyOf("was delivered again while it runs here",
                    "may have been delivered before it started");
            assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE task_id = '" + id + "'")).isEqualTo(1);
        }
    }

    /**
     * A worker whose Redis user may not run INFO (a least-privilege ACL) would hold every job it reads for the restart
     * hold's 25 s, for good: it refuses to start instead, saying why.
     */
    @Test
    void aWorkerWhoseRedisUserMayNotRunInfoRefusesToStart() throws Exception {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "redis-no-info"))) {
            io.lettuce.core.RedisClient admin = io.lettuce.core.RedisClient.create(redis.url());
            try {
                admin.connect().sync().aclSetuser("kage", io.lettuce.core.AclSetuserArgs.Builder.on().addPassword("pw-123")
                        .allKeys().allChannels().allCommands().removeCommand(io.lettuce.core.protocol.CommandType.INFO));
            } finally {
                admin.shutdown();
            }
            Process worker = fleet.startWorker("no-info-w1", dir.resolve("work"), origin,
                    env(Map.of("REDIS_URL", "redis://kage:pw-123@127.0.0.1:" + redis.port())));
            assertThat(worker.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)).as(fleet.log("no-info-w1")).isTrue();
            assertThat(worker.exitValue()).isEqualTo(1);
            assertThat(fleet.log("no-info-w1")).contains("Redis refuses INFO server").contains("allow INFO");
        }
    }

    /**
     * Starts the coordinator on the private Redis, submits a 12-second job for rec-a (its entry is in its stream when the
     * submit answers) and saves Redis's data, before any worker exists: a restart brings the entry back undelivered.
     */
    private String submitThenSnapshot(Fleet fleet, PrivateRedis redis, Map<String, String> onPrivate) throws Exception {
        fleet.startCoordinator(onPrivate);
        fleet.awaitHealthy();
        String id = submit(fleet, "delivered twice sleep=12 rerun=1", List.of("rec-a"), Map.of());
        io.lettuce.core.RedisClient admin = io.lettuce.core.RedisClient.create(redis.url());
        try {
            assertThat(admin.connect().sync().save()).isEqualTo("OK");
        } finally {
            admin.shutdown();
        }
        return id;
    }

    private void awaitLogged(Fleet fleet, String process, String text) {
        await().atMost(Duration.ofSeconds(60)).until(() -> fleet.log(process).contains(text));
    }

    /**
     * The run log and the WARN/ERROR/reconnect lines of the coordinator and the workers named: what a CI log needs on
     * failure to tell a late stop from an early start.
     */
    private String story(Fleet fleet, String... workers) throws Exception {
        StringBuilder logs = new StringBuilder(fleet.log("coordinator"));
        for (String worker : workers) {
            logs.append(fleet.log(worker));
        }
        return "\n" + read(runs.resolve("runs.log")) + logs.toString().lines()
                .filter(l -> l.contains("WARN") || l.contains("ERROR") || l.contains("Reconnected") || l.contains("waits"))
                .collect(java.util.stream.Collectors.joining("\n", "\n", ""));
    }

    @Test
    void aRunningEntryThatNoBeatCanCheckIsStoppedByItsOwnLease() throws Exception {
        // A running entry is this worker's only as long as its beats find it so. One whose refresh keeps failing while
        // the heartbeat gets through (a refresh that waited out its timeout across a Redis restart) may be an entry
        // Redis lost, which a coordinator enqueues again after JobQueue.LOST_ENTRY_GRACE: its own lease must stop it
        // before then. Here the worker's Redis user may not XCLAIM, so every beat's heartbeat gets through and its
        // refresh of the running entry (XCLAIM JUSTID, in a script) fails.
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        io.lettuce.core.RedisClient admin = null;
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "lease-unchecked"))) {
            admin = io.lettuce.core.RedisClient.create(redis.url());
            var commands = admin.connect().sync();
            commands.aclSetuser("no-xclaim", io.lettuce.core.AclSetuserArgs.Builder.on().addPassword("secret-1")
                    .allKeys().allChannels().allCommands().removeCommand(io.lettuce.core.protocol.CommandType.XCLAIM));
            URI direct = URI.create(redis.url());
            fleet.startCoordinator(env(Map.of("REDIS_URL", redis.url())));
            fleet.awaitHealthy();
            fleet.startWorker("unchecked-w1", dir.resolve("work"), origin, env(Map.of("REDIS_URL",
                    "redis://no-xclaim:secret-1@" + direct.getHost() + ":" + direct.getPort())));
            String id = submit(fleet, "unchecked sleep=45", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(60)).until(() -> count("start " + id + "/rec-a ") == 1);
            // The lease is 15 s; checked every second, with 5 s for the agent to exit.
            await().atMost(Duration.ofSeconds(35)).pollInterval(Duration.ofMillis(500))
                    .until(() -> fleet.log("unchecked-w1").contains("could not be checked against Redis"));
            await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(200))
                    .until(() -> fleet.log("unchecked-w1").contains("stopped here and left alone"));
            assertThat(count("end " + id + "/rec-a ")).as("stopped by its lease before its end").isZero();
            // The premise: the worker's heartbeat got through all along (its own lease never ran out), its refresh did not.
            assertThat(commands.exists(fleet.redis.keys().worker("unchecked-w1"))).isEqualTo(1);
            assertThat(fleet.log("unchecked-w1")).contains("Heartbeat failed").doesNotContain("No heartbeat has reached Redis");
        } finally {
            if (admin != null) {
                admin.shutdown();
            }
        }
    }

    @Test
    void aWorkerCutOffFromRedisStopsItsAgentBeforeAnotherWorkerTakesTheJob() throws Exception {
        // Worker 1 reaches Redis through a proxy the test cuts while its agent runs; worker 2 reaches it directly. Once
        // worker 1's heartbeat lapses, worker 2 reclaims the entry and runs the job: worker 1 must have stopped its own
        // run by then (its lease), or the two would run at once (the fixture writes OVERLAP).
        URI redisUri = URI.create(TestServices.redisUrl());
        try (TcpProxy proxy = TcpProxy.start(redisUri.getHost(), redisUri.getPort() > 0 ? redisUri.getPort() : 6379);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "lease"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            fleet.startWorker("lease-w1", dir.resolve("work"), origin,
                    env(Map.of("REDIS_URL", TcpProxy.redirectRedisUrl(TestServices.redisUrl(), proxy))));
            String id = submit(fleet, "cut off sleep=40 rerun=1", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(60)).until(() -> count("start " + id + "/rec-a ") == 1);
            fleet.startWorker("lease-w2", dir.resolve("work"), origin, env());
            proxy.cut();
            await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> count("start " + id + "/rec-a ") == 2);
            proxy.restore();
            JsonNode task = awaitFinal(fleet, id, Duration.ofSeconds(90));
            assertThat(task.get("status").asText()).isEqualTo("completed");
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
            assertThat(count("end " + id + "/rec-a ")).as("the cut-off run was stopped before its end").isEqualTo(1);
            assertThat(fleet.log("lease-w1")).contains("No heartbeat has reached Redis for");
            assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE task_id = '" + id + "'")).isEqualTo(1);
        }
    }

    @Test
    void aPostgresOutageMidRunLosesNoRow() throws Exception {
        URI db = URI.create(TestServices.databaseUrl());
        try (TcpProxy proxy = TcpProxy.start(db.getHost(), db.getPort() > 0 ? db.getPort() : 5432);
             Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "postgres-outage"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            Map<String, String> throughProxy = env(Map.of("DATABASE_URL", TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy)));
            fleet.startWorker("pg-w1", dir.resolve("work"), origin, throughProxy);
            List<String> ids = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                ids.add(submit(fleet, "during an outage " + i + " sleep=1", List.of("rec-a"), Map.of()));
            }
            await().atMost(Duration.ofSeconds(60)).until(() -> lines("start ") >= 3);
            proxy.cut();
            // Cut until outcomes went to the outbox: finished jobs wait for their write without holding a slot, so the
            // agents alone could all end within the pool's connection timeout, before any write gave up.
            await().atMost(Duration.ofSeconds(60))
                    .until(() -> lines("end ") >= 12 && fleet.log("pg-w1").contains("Postgres unavailable"));
            proxy.restore();
            await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 20);
            assertThat(fleet.count("SELECT count(*) FROM execution_results")).isEqualTo(20);
            assertThat(fleet.log("pg-w1")).contains("Postgres unavailable").contains("Postgres answers again");
            assertThat(fleet.redis.redis().llen(fleet.redis.keys().outbox("rec-a"))).isZero();
        }
    }

    @Test
    void outcomesWaitingForASlowPostgresHoldNoSlotSoTheNextAgentsStart() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "slow-postgres"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            fleet.startWorker("slow-pg-w1", dir.resolve("work"), origin, env(Map.of("MAX_PARALLEL_CLIS", "1")));
            fleet.startWorker("slow-pg-w2", dir.resolve("work"), origin, env(Map.of("MAX_PARALLEL_CLIS", "1")));
            dev.kage.config.DatabaseUrl url = dev.kage.config.DatabaseUrl.parse("test", TestServices.databaseUrl());
            try (java.sql.Connection locker = java.sql.DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password())) {
                locker.createStatement().execute("SET search_path TO \"" + fleet.schema + "\"");
                locker.setAutoCommit(false);
                // Result rows cannot be written until this transaction ends (reads still can): every outcome waits.
                locker.createStatement().execute("LOCK TABLE execution_results IN SHARE MODE");
                List<String> ids = new ArrayList<>();
                for (int i = 0; i < 4; i++) {
                    ids.add(submit(fleet, "slow postgres " + i + " sleep=0.2", List.of("rec-a"), Map.of()));
                }
                // One slot each: the agents run one after another, each while the ones before wait for their rows.
                await().atMost(Duration.ofSeconds(60)).until(() -> lines("end ") == 4);
                // Longer than the reclaim idle time (15 s here): a finished job waiting for its row is its worker's still.
                await().pollDelay(Duration.ofSeconds(20)).atMost(Duration.ofSeconds(25)).until(() -> true);
                assertThat(fleet.count("SELECT count(*) FROM execution_results")).isZero();
                assertThat(fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'")).isZero();
                assertThat(fleet.redis.redis().xpending(fleet.redis.keys().jobStream("rec-a", dev.kage.task.Priority.NORMAL),
                        dev.kage.redis.KageKeys.WORKER_GROUP).getCount()).as("unacknowledged until the rows exist").isEqualTo(4);
                locker.rollback();
            }
            await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(300))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 4);
            assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE status = 'completed'")).isEqualTo(4);
            assertThat(dev.kage.e2e.chaos.Chaos.overlaps(runs.resolve("runs.log"))).isEmpty();
            assertThat(lines("start ")).isEqualTo(4);
            assertThat(fleet.log("slow-pg-w1") + fleet.log("slow-pg-w2")).doesNotContain("Reclaimed");
        }
    }

    /**
     * A dead worker left two entries: one past its delivery limit, then an ordinary one. The poison's failure row waits
     * for a Postgres that does not write; the ordinary job is reclaimed and started meanwhile (the dead letter is
     * written on a job thread, not the reclaimer's), and both end as they should once Postgres writes again.
     */
    @Test
    void aDeadLetterWaitingForPostgresDoesNotHoldUpTheReclaimOfTheEntriesBehindIt() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "dead-letter-waits"))) {
            fleet.startCoordinator(env());
            fleet.awaitHealthy();
            String stream = fleet.redis.keys().jobStream("rec-a", dev.kage.task.Priority.NORMAL);
            var redis = fleet.redis.redis();
            String poison = submit(fleet, "poisoned long ago", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(10)).until(() -> redis.exists(stream) == 1 && redis.xlen(stream) == 1);
            String ordinary = submit(fleet, "left by a dead worker sleep=1", List.of("rec-a"), Map.of());
            await().atMost(Duration.ofSeconds(10)).until(() -> redis.xlen(stream) == 2);
            // A worker that read both and died (no heartbeat): idle for ten minutes, the first delivered twice already.
            var read = redis.xreadgroup(io.lettuce.core.Consumer.from(dev.kage.redis.KageKeys.WORKER_GROUP, "ghost-w"),
                    io.lettuce.core.XReadArgs.Builder.count(2), io.lettuce.core.XReadArgs.StreamOffset.lastConsumed(stream));
            assertThat(read).hasSize(2);
            redis.xclaim(stream, io.lettuce.core.Consumer.from(dev.kage.redis.KageKeys.WORKER_GROUP, "ghost-w"),
                    io.lettuce.core.XClaimArgs.Builder.minIdleTime(0).idle(Duration.ofMinutes(10)).retryCount(2).justid(),
                    read.get(0).getId());
            redis.xclaim(stream, io.lettuce.core.Consumer.from(dev.kage.redis.KageKeys.WORKER_GROUP, "ghost-w"),
                    io.lettuce.core.XClaimArgs.Builder.minIdleTime(0).idle(Duration.ofMinutes(10)).retryCount(1).justid(),
                    read.get(1).getId());

            dev.kage.config.DatabaseUrl url = dev.kage.config.DatabaseUrl.parse("test", TestServices.databaseUrl());
            try (java.sql.Connection locker = java.sql.DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password())) {
                locker.createStatement().execute("SET search_path TO \"" + fleet.schema + "\"");
                locker.setAutoCommit(false);
                // No result row can be written (reads still can): the poison's failure row waits.
                locker.createStatement().execute("LOCK TABLE execution_results IN SHARE MODE");
                fleet.startWorker("dl-w1", dir.resolve("work"), origin, env(Map.of("KAGE_MAX_DELIVERIES", "2")));
                // Before this change the reclaimer waited with the poison's row, and the entry behind it with it.
                await().atMost(Duration.ofSeconds(40)).until(() -> count("start " + ordinary + "/rec-a ") == 1);
                locker.rollback();
            }
            await().atMost(Duration.ofSeconds(60)).until(() -> deadLetters(fleet).size() == 1);
            assertThat(deadLetters(fleet).get(0).get("task_id").asText()).isEqualTo(poison);
            assertThat(awaitFinal(fleet, poison, Duration.ofSeconds(30)).get("status").asText()).isEqualTo("failed");
            assertThat(awaitFinal(fleet, ordinary, Duration.ofSeconds(60)).get("status").asText()).isEqualTo("completed");
            assertThat(count("start " + poison + "/rec-a ")).as("a poison job never runs again").isZero();
            assertThat(redis.xpending(stream, dev.kage.redis.KageKeys.WORKER_GROUP).getCount()).isZero();
        }
    }

    @Test
    void jobsWaitingBehindUnwrittenOutcomesStayTheirLiveWorkersWhileADeadWorkersBehindThemAreReclaimed() throws Exception {
        // A worker holds room for its slots plus 1,000 finished jobs whose outcomes wait for Postgres. Once finished
        // no-op jobs fill it, the jobs of the next read wait for room: every one of them must stay its worker's (listed
        // and refreshed), or another worker's reclaimer takes those idle past the reclaim time and both run them. And
        // the live worker's thousand idle finished entries, oldest in the stream, must not hide a dead worker's behind
        // them from the reclaimer.
        int slots = 8;
        int filling = slots + 1_000 - 1;
        int after = 30;
        Path agentsFile = dir.resolve("noop-agents.yml");
        Files.writeString(agentsFile, "agents:\n  nop:\n    type: noop\n");
        // No socket timeout: the outcomes wait for the lock as long as the test holds it, not 60 s.
        Map<String, String> noop = env(Map.of("KAGE_AGENTS_FILE", agentsFile.toString(),
                "MAX_PARALLEL_CLIS", Integer.toString(slots), "KAGE_DB_SOCKET_TIMEOUT_SECONDS", "0"));
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "room-wait"))) {
            fleet.startCoordinator(noop);
            fleet.awaitHealthy();
            String[] streams = fleet.redis.keys().jobStreams("nop");
            java.util.function.ToLongFunction<String> owned = consumer -> java.util.Arrays.stream(streams).mapToLong(stream -> {
                Long n = fleet.redis.redis().xpending(stream, dev.kage.redis.KageKeys.WORKER_GROUP)
                        .getConsumerMessageCount().get(consumer);
                return n == null ? 0 : n;
            }).sum();
            dev.kage.config.DatabaseUrl url = dev.kage.config.DatabaseUrl.parse("test", TestServices.databaseUrl());
            long deadOnes;
            try (java.sql.Connection locker = java.sql.DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password())) {
                locker.createStatement().execute("SET search_path TO \"" + fleet.schema + "\"");
                locker.setAutoCommit(false);
                locker.createStatement().execute("LOCK TABLE execution_results IN SHARE MODE");
                fleet.startWorker("room-w1", dir.resolve("work"), origin, noop);
                fleet.awaitWorkers(1);
                fleet.submitBatch(KEY, "nop", filling / 2, origin, i -> "fill " + i);
                fleet.submitBatch(KEY, "nop", filling - filling / 2, origin, i -> "fill " + (filling / 2 + i));
                await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(300))
                        .until(() -> owned.applyAsLong("room-w1") == filling);
                // One job's room is left, and the claim loop waits on the empty streams with every slot given back.
                // Thirty more: the blocking read takes one, which starts and fills the room; the next read takes as many
                // as there are free slots, and the first of them waits for room.
                fleet.submitBatch(KEY, "nop", after, origin, i -> "after " + i);
                await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(200))
                        .until(() -> owned.applyAsLong("room-w1") >= filling + 3);
                // A third worker runs the rest, their outcomes waiting too, and is killed: its entries lie behind w1's.
                Process dying = fleet.startWorker("room-w3", dir.resolve("work3"), origin, noop);
                long left = filling + after - owned.applyAsLong("room-w1");
                await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200))
                        .until(() -> owned.applyAsLong("room-w3") == left);
                deadOnes = left;
                dying.destroyForcibly().waitFor();
                fleet.startWorker("room-w2", dir.resolve("work2"), origin, noop);
                // Past the reclaim idle time (15 s here) and w3's heartbeat: w2 takes w3's entries and none of w1's.
                await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(500))
                        .until(() -> owned.applyAsLong("room-w3") == 0);
                assertThat(fleet.log("room-w2")).contains("from room-w3");
                assertThat(fleet.log("room-w1") + fleet.log("room-w2")).as("no job was taken from its live worker")
                        .doesNotContain("from room-w1");
                locker.rollback();
            }
            int tasks = filling + after;
            await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500))
                    .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == tasks);
            Map<String, Long> starts = new HashMap<>();
            fleet.redis.redis().xrange(fleet.redis.keys().events(), io.lettuce.core.Range.create("-", "+")).stream()
                    .map(m -> m.getBody()).filter(e -> "job.started".equals(e.get("type")))
                    .forEach(e -> starts.merge(e.get("task_id"), 1L, Long::sum));
            // The dead worker's jobs ran again (one run after the other: it was dead), every other job once.
            assertThat(starts).hasSize(tasks);
            assertThat(starts.values().stream().filter(n -> n == 2).count()).isBetween(1L, deadOnes);
            assertThat(starts.values()).allSatisfy(n -> assertThat(n).isBetween(1L, 2L));
            assertThat(fleet.log("room-w1") + fleet.log("room-w2")).doesNotContain("from room-w1");
        }
    }

    private Map<String, String> env() {
        return env(Map.of());
    }

    private Map<String, String> env(Map<String, String> extra) {
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents.toString());
        env.put("E2E_LOG_DIR", runs.toString());
        env.put("KAGE_RECLAIM_IDLE_SECONDS", "15");
        // These tests are about the queue: the fleet-wide rate limit (50 per minute by default) stays out of the way.
        env.put("MAX_REQUESTS_PER_MINUTE", "100000");
        env.putAll(extra);
        return env;
    }

    /** A task for rec-a, or empty when the coordinator does not take it now (a 503 while Redis comes back). */
    private java.util.Optional<String> trySubmit(Fleet fleet, String description) throws Exception {
        ObjectNode body = JSON.createObjectNode().put("description", description).put("repo", origin.toString());
        body.putArray("cli_assignments").addObject().put("cli_name", "rec-a").put("timeout", 120);
        var response = fleet.post("/api/v1/tasks", KEY, body.toString());
        assertThat(response.statusCode()).as(response.body()).isIn(202, 503);
        return response.statusCode() == 202 ? java.util.Optional.of(JSON.readTree(response.body()).get("task_id").asText())
                : java.util.Optional.empty();
    }

    private String submit(Fleet fleet, String description, List<String> agentNames, Map<String, String> headers) throws Exception {
        ObjectNode body = JSON.createObjectNode().put("description", description).put("repo", origin.toString());
        var assignments = body.putArray("cli_assignments");
        agentNames.forEach(a -> assignments.addObject().put("cli_name", a).put("timeout", 120));
        var response = fleet.post("/api/v1/tasks", KEY, body.toString());
        assertThat(response.statusCode()).as(response.body()).isEqualTo(202);
        return JSON.readTree(response.body()).get("task_id").asText();
    }

    private static JsonNode awaitFinal(Fleet fleet, String id, Duration atMost) {
        return await().atMost(atMost).pollInterval(Duration.ofMillis(300))
                .until(() -> JSON.readTree(fleet.get("/api/v1/tasks/" + id, KEY).body()),
                        t -> List.of("completed", "partial", "failed", "cancelled").contains(t.path("status").asText()));
    }

    private static JsonNode deadLetters(Fleet fleet) throws Exception {
        return JSON.readTree(fleet.get("/api/v1/dead-letters", KEY).body()).get("dead_letters");
    }

    private long lines(String prefix) throws Exception {
        return read(runs.resolve("runs.log")).lines().filter(l -> l.startsWith(prefix)).count();
    }

    private long count(String prefix) throws Exception {
        return lines(prefix);
    }

    private static String read(Path file) throws Exception {
        return Files.exists(file) ? Files.readString(file) : "";
    }
}
