package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.agent.OutputFormat;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.PeriodLimits;
import dev.kage.config.BudgetMode;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.worker.metrics.MetricsServer;
import dev.kage.worker.metrics.WorkerMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import dev.kage.redis.KageKeys;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobMessage;
import dev.kage.task.JobStatus;
import java.math.BigDecimal;
import dev.kage.task.LiveTaskState;
import dev.kage.task.Priority;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TestServices;
import dev.kage.worker.WorkerSettings;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.worktree.GitTestRepos;
import dev.kage.worker.worktree.WorktreeManager;
import io.lettuce.core.api.StatefulRedisConnection;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.redisson.api.RedissonClient;

/** One job at a time through the whole worker path, on real Redis, Postgres, git and agent processes. */
class JobRunnerTest {
    private static final Path DEMO_AGENT = Path.of("..", "ops", "agents", "demo-agent").toAbsolutePath().normalize();
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private final RedisFixture redis = new RedisFixture();
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();
    private RedissonClient redisson;
    private StatefulRedisConnection<String, String> blocking;
    private Path origin;
    /** The worker's registry as in production: the runner's and the limiter's meters, served by {@link MetricsServer}. */
    private final PrometheusMeterRegistry meters = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

    @BeforeEach
    void setUp() throws Exception {
        origin = GitTestRepos.create(dir.resolve("origin"));
        redisson = FleetRateLimiter.client(TestServices.redisUrl());
        blocking = redis.client().connect();
    }

    @AfterEach
    void tearDown() {
        blocking.close();
        redisson.shutdown();
        redis.close();
        db.close();
    }

    @Test
    void theDemoAgentsEditAndReportedUsageEndUpInTheRowsAndOnItsBranch() throws Exception {
        String description = "Add a line to the demo file";
        Run run = run(BudgetMode.LOG, agent("claude-code", List.of(DEMO_AGENT.toString(), "-p", "{prompt}", "--output-format",
                "json")), description, 50_000, "main", 60);

        assertThat(run.result.status()).isEqualTo(JobStatus.COMPLETED);
        assertThat(run.result.tokensIn()).isEqualTo((description.length() + 3) / 4 + 50);
        assertThat(run.result.tokensOut()).isEqualTo(120);
        assertThat(run.result.usageSource()).isEqualTo("agent");
        assertThat(run.result.cost()).isPositive();
        assertThat(run.result.diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        assertThat(run.result.branch()).isEqualTo("kage/" + run.task.id() + "/claude-code");
        assertThat(run.errors).isEmpty();
        assertThat(GitTestRepos.git(origin, "show", run.result.branch() + ":KAGE_DEMO.md")).contains(description);
        assertThat(store.find("acme", run.task.id()).orElseThrow().status()).isEqualTo(TaskStatus.COMPLETED);
        assertThat(pending()).isZero();
        assertThat(new LiveTaskState(redis.keys(), redis.redis()).job("acme", run.task.id().toString(), "claude-code"))
                .contains(JobStatus.COMPLETED);
        var pool = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.LOG, 0.8, PeriodLimits.NONE, Clock.systemUTC()).taskPool("acme", run.task.id().toString(), 50_000, 0);
        assertThat(pool.used()).isEqualTo(run.result.totalTokens());
        assertThat(pool.reserved()).isZero();
    }

    @Test
    void aCompletedRunIsCountedWithItsTokensCostAndDurationOnTheMetricsEndpoint() throws Exception {
        String description = "Add a line to the demo file";
        Run run = run(BudgetMode.LOG, agent("claude-code", List.of(DEMO_AGENT.toString(), "-p", "{prompt}", "--output-format",
                "json")), description, 50_000, "main", 60);
        assertThat(run.result.status()).isEqualTo(JobStatus.COMPLETED);

        MetricsServer server = new MetricsServer(meters, 0);
        server.start();
        HttpResponse<String> response;
        try {
            response = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + server.port() + "/prometheus")).GET().build(), HttpResponse.BodyHandlers.ofString());
        } finally {
            server.stop();
        }
        assertThat(response.statusCode()).isEqualTo(200);
        assertThat(response.headers().firstValue("Content-Type")).hasValueSatisfying(t -> assertThat(t).startsWith("text/plain"));
        String text = response.body();
        assertThat(sample(text, "kage_jobs_total", "agent=\"claude-code\"", "outcome=\"completed\"")).isEqualTo(1.0);
        assertThat(sample(text, "kage_tokens_total", "agent=\"claude-code\"", "tenant=\"acme\"", "direction=\"input\""))
                .isEqualTo((double) run.result.tokensIn());
        assertThat(sample(text, "kage_tokens_total", "agent=\"claude-code\"", "tenant=\"acme\"", "direction=\"output\""))
                .isEqualTo(120.0);
        assertThat(sample(text, "kage_cost_usd_total", "agent=\"claude-code\"", "tenant=\"acme\""))
                .isCloseTo(run.result.cost().doubleValue(), org.assertj.core.api.Assertions.within(1e-9));
        assertThat(sample(text, "kage_job_duration_seconds_count", "agent=\"claude-code\"", "outcome=\"completed\""))
                .isEqualTo(1.0);
        assertThat(sample(text, "kage_job_duration_seconds_sum", "agent=\"claude-code\"", "outcome=\"completed\""))
                .as("claim to outcome covers the agent's run").isGreaterThanOrEqualTo(run.result.durationMs() / 1000.0);
        assertThat(sample(text, "kage_job_start_seconds_count")).isEqualTo(1.0);
        assertThat(sample(text, "kage_ratelimit_wait_seconds_count", "group=\"claude-code\"")).isEqualTo(1.0);
        assertThat(sample(text, "kage_worktrees_active")).as("removed after the run").isZero();
        assertThat(text).contains("# TYPE kage_jobs_total counter", "# TYPE kage_job_duration_seconds summary",
                "# TYPE kage_worktrees_active gauge");
        // Prometheus conventions: snake_case names, counters end in _total; and no task ids or descriptions leak.
        for (String line : text.lines().filter(l -> l.startsWith("kage_")).toList()) {
            assertThat(line).matches("[a-z_]+(\\{[^}]*})? \\S+");
        }
        assertThat(text).doesNotContain(run.task.id().toString(), description);
    }

    /** The value of the one sample of {@code name} whose labels include every one of {@code labels}. */
    private static double sample(String scrape, String name, String... labels) {
        Pattern line = Pattern.compile("^" + Pattern.quote(name) + "(\\{(.*)})? (\\S+)$", Pattern.MULTILINE);
        Matcher m = line.matcher(scrape);
        java.util.List<Double> found = new java.util.ArrayList<>();
        while (m.find()) {
            String have = m.group(2) == null ? "" : m.group(2);
            if (java.util.Arrays.stream(labels).allMatch(have::contains)) {
                found.add(Double.parseDouble(m.group(3)));
            }
        }
        assertThat(found).as(name + " with " + java.util.Arrays.toString(labels) + " in\n" + scrape).hasSize(1);
        return found.getFirst();
    }

    @Test
    void inLogModeAnOverrunCompletesAndIsRecordedInTheSeedsShape() throws Exception {
        Run run = run(BudgetMode.LOG, agent("claude-code", List.of(DEMO_AGENT.toString(), "-p", "{prompt}", "--output-format",
                "json")), "Quick test", 100, "main", 60);

        assertThat(run.result.status()).isEqualTo(JobStatus.COMPLETED);
        long used = run.result.totalTokens();
        assertThat(run.errors).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("BudgetExceededError");
            assertThat(error.errorMessage()).isEqualTo("Task would exceed token budget: " + used + " > 100");
            JsonNode details = JSON.readTree(error.detailsJson());
            assertThat(details.get("cli_name").asText()).isEqualTo("claude-code");
            assertThat(details.get("tokens_used").asLong()).isEqualTo(used);
            assertThat(details.get("token_limit").asLong()).isEqualTo(100);
            JsonNode stats = details.get("usage_stats");
            assertThat(stats.get("tokens_used").asLong()).isEqualTo(used);
            assertThat(stats.get("tokens_remaining").asLong()).isEqualTo(100 - used);
            assertThat(stats.get("percent_used").asDouble()).isEqualTo(Math.round(1000.0 * used / 100) / 10.0);
            assertThat(stats.get("warning_issued").asBoolean()).isTrue();
        });
        assertThat(sample(meters.scrape(), "kage_budget_violations_total", "pool=\"task\"", "action=\"recorded\"")).isEqualTo(1.0);
        assertThat(sample(meters.scrape(), "kage_budget_warnings_total", "pool=\"task\"")).isEqualTo(1.0);
    }

    @Test
    void inEnforceModeAJobThatCannotReserveDoesNotStart() throws Exception {
        Run run = run(BudgetMode.ENFORCE, agent("claude-code", List.of(DEMO_AGENT.toString(), "-p", "{prompt}", "--output-format",
                "json")), "Quick test", 100, "main", 60);

        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.result.totalTokens()).isZero();
        assertThat(run.result.outputSummary()).startsWith("not started: Task would exceed token budget:");
        assertThat(run.errors).singleElement().extracting(ErrorRecord::errorType).isEqualTo("BudgetExceededError");
        assertThat(sample(meters.scrape(), "kage_budget_violations_total", "pool=\"task\"", "action=\"refused\"")).isEqualTo(1.0);
        assertThat(sample(meters.scrape(), "kage_jobs_total", "outcome=\"failed\"")).isEqualTo(1.0);
        assertThat(GitTestRepos.git(origin, "branch", "--list", "kage/*")).isEmpty();
        assertThat(pending()).isZero();
    }

    @Test
    void aDeliveryThisWorkerRunsAgainHoldsAfreshAndIsRefusedOnceItsTaskBudgetIsSpent() {
        // An error after the first run was settled left the entry pending, and this worker reclaimed it: same job,
        // attempt and entry, same worker.
        KageSettings settings = KageSettings.load(Env.of(TestServices.environment(redis.namespace(), db.schema())));
        BudgetLedger ledger = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8,
                settings.budget().tenantDefaults(), Clock.systemUTC());
        AgentConfig agent = agent("claude-code", List.of(DEMO_AGENT.toString()));
        String task = UUID.randomUUID().toString();
        JobMessage job = new JobMessage(JobMessage.jobId(task, agent.name()), task, "acme", agent.name(), Priority.NORMAL, "p", "",
                "main", 60, 1_000, 1);
        BudgetLedger.Hold first = ledger.reserve(JobRunner.holdRequest(settings, "test-worker", job, agent, "1-0", 100, 200));
        assertThat(first.accepted()).isTrue();
        ledger.settle(first, 1_000, 0);

        BudgetLedger.Hold again = ledger.reserve(JobRunner.holdRequest(settings, "test-worker", job, agent, "1-0", 100, 200));
        assertThat(again.status()).as("not the settled run's hold").isNotEqualTo(BudgetLedger.HoldStatus.DUPLICATE);
        assertThat(again.accepted()).as("the task's 1,000 tokens are spent").isFalse();
    }

    @Test
    void aRedeliveredJobWhoseOutcomeWaitsInTheOutboxIsAcknowledgedWithoutRunningAgain() throws Exception {
        // The first delivery ran while Postgres was away: its outcome went to the outbox, and the worker died before
        // its XACK. Postgres is back; no flush has run yet.
        Path ran = dir.resolve("ran");
        AgentConfig agent = agent("claude-code", List.of("sh", "-c", "echo run >> " + ran + "; echo '{\"type\":\"result\",\"result\":\"x\"}'"));
        Harness h = harness(BudgetMode.LOG, agent);
        TaskRecord task = h.submit("p", 60);
        ClaimedJob first = h.claim();
        JobMessage job = first.job();
        ResultRecord kept = new ResultRecord(task.id(), job.jobId(), agent.name(), JobStatus.COMPLETED, "done before", 1, 1, 0, 0,
                BigDecimal.ONE, "agent", null, 10, 0, null, null, null, "dead-worker", job.attempt(), null);
        redis.redis().rpush(redis.keys().outbox(agent.name()), new ObjectMapper().registerModule(
                new com.fasterxml.jackson.datatype.jsr310.JavaTimeModule()).writeValueAsString(new OutcomeRecorder.Spooled(kept, List.of())));

        h.runner().run(new ClaimedJob(first.stream(), first.entryId(), first.fields(), true), new JobControl());

        assertThat(ran).as("the agent ran again").doesNotExist();
        assertThat(pending()).as("the re-delivery is acknowledged").isZero();
        assertThat(store.results(task.id())).as("the outbox's flush writes it").isEmpty();
    }

    @Test
    void aTaskWithoutARepoOnAWorkerWithoutADefaultOneFailsSayingWhatToSet() throws Exception {
        // The seed's request names no repository: the seed ran in its own. A worker without KAGE_DEFAULT_REPO says so.
        Path ran = dir.resolve("ran");
        AgentConfig agent = agent("claude-code", List.of("/bin/sh", "-c", "touch " + ran));
        Harness h = harness(BudgetMode.LOG, agent, Map.of(), "");
        TaskRecord task = h.submit("p", 60);
        h.runner().run(h.claim(), new JobControl());

        assertThat(ran).as("never started").doesNotExist();
        assertThat(store.errors(task.id())).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("WorktreeError");
            assertThat(error.errorMessage()).contains("names no repo").contains("KAGE_DEFAULT_REPO");
            assertThat(error.retryable()).isFalse();
        });
        assertThat(store.results(task.id())).extracting(ResultRecord::status).containsExactly(JobStatus.FAILED);
        assertThat(pending()).isZero();
    }

    @Test
    void aTaskCannotMakeAWorkerCloneAWorkersCachesOrWorktrees() throws Exception {
        Path root = dir.resolve("kage-work");
        Path mine = root.resolve("w-1");
        Path neighbour = root.resolve("w-2");
        java.nio.file.Files.createDirectories(neighbour.resolve("repos").resolve("x.git"));
        java.nio.file.Files.createDirectories(mine.resolve("worktrees").resolve("t-demo"));
        java.nio.file.Files.createSymbolicLink(dir.resolve("innocent"), neighbour.resolve("repos"));
        for (String inside : List.of(neighbour.resolve("repos/x.git").toString(), "file://" + mine.resolve("worktrees/t-demo"),
                dir.resolve("innocent/x.git").toString(), root + "/w-3/repos/y.git", mine + "/repos/../repos/x.git",
                "file://localhost" + neighbour.resolve("repos/x.git"), "FILE://" + neighbour.resolve("repos/x.git"),
                "file://" + root + "/w-2/%72epos/x.git")) {
            assertThat(JobRunner.insideWorkRoot(inside, mine)).as(inside).isTrue();
        }
        for (String outside : List.of(origin.toString(), "https://github.com/acme/app.git", root.resolve("shared-origin").toString(),
                "git@github.com:acme/app.git")) {
            assertThat(JobRunner.insideWorkRoot(outside, mine)).as(outside).isFalse();
        }
        // The job fails at once, never cloning.
        AgentConfig agent = agent("claude-code", List.of(DEMO_AGENT.toString()));
        Harness h = harness(BudgetMode.LOG, agent);
        TaskRecord task = h.submit("p", 60);
        ClaimedJob claimed = h.claim();
        var fields = new java.util.HashMap<>(claimed.fields());
        fields.put("repo", dir.resolve("work").getParent().resolve("other-worker/repos/x.git").toString());
        h.runner().run(new ClaimedJob(claimed.stream(), claimed.entryId(), fields, false), new JobControl());
        assertThat(store.errors(task.id())).singleElement().satisfies(error ->
                assertThat(error.errorMessage()).contains("inside the workers' work directory"));
    }

    @Test
    void aJobAtItsDeliveryLimitWhoseLastDeliveryFinishedItIsAcknowledgedNotDeadLettered() throws Exception {
        // The last delivery recorded the outcome and its worker died before the XACK; the entry reached its limit.
        AgentConfig agent = agent("claude-code", List.of(DEMO_AGENT.toString()));
        Harness h = harness(BudgetMode.LOG, agent);
        TaskRecord task = h.submit("p", 60);
        ClaimedJob claimed = h.claim();
        ResultRecord done = new ResultRecord(task.id(), claimed.job().jobId(), agent.name(), JobStatus.COMPLETED, "done", 1, 1, 0, 0,
                BigDecimal.ONE, "agent", null, 10, 0, null, null, null, "dead-worker", 1, null);
        store.recordOutcome(done, List.of());

        h.runner().poisoned(new ClaimedJob(claimed.stream(), claimed.entryId(), claimed.fields(), true), 5);

        assertThat(redis.redis().xlen(redis.keys().deadLetters())).as("no dead letter").isZero();
        assertThat(pending()).as("acknowledged").isZero();
        assertThat(store.errors(task.id())).as("no PoisonJobError").isEmpty();
        assertThat(store.results(task.id())).extracting(ResultRecord::status).containsExactly(JobStatus.COMPLETED);
    }

    @Test
    void aPoisonJobWhoseLetterCouldNotBeWrittenGetsItOnTheNextPassNotJustAnAcknowledgement() throws Exception {
        AgentConfig agent = agent("claude-code", List.of(DEMO_AGENT.toString()));
        Harness h = harness(BudgetMode.LOG, agent);
        TaskRecord task = h.submit("p", 60);
        ClaimedJob claimed = h.claim();
        ClaimedJob redelivered = new ClaimedJob(claimed.stream(), claimed.entryId(), claimed.fields(), true);
        // Redis refuses the letter (a clobbered key here; a failover or a worker killed at that point alike).
        redis.redis().set(redis.keys().deadLetters(), "not a stream");
        assertThatThrownBy(() -> h.runner().poisoned(redelivered, 5)).isInstanceOf(io.lettuce.core.RedisException.class);
        assertThat(store.errors(task.id())).extracting(ErrorRecord::errorType).containsExactly("PoisonJobError");
        assertThat(pending()).as("still pending").isEqualTo(1);
        redis.redis().del(redis.keys().deadLetters());

        // The next reclaim pass: the failure is recorded, the letter is not. Before, this pass only acknowledged it.
        h.runner().poisoned(redelivered, 6);
        var letters = redis.redis().xrange(redis.keys().deadLetters(), io.lettuce.core.Range.create("-", "+"));
        assertThat(letters).singleElement().satisfies(m -> assertThat(m.getBody()).containsEntry("dead_from_id", claimed.entryId()));
        assertThat(pending()).as("acknowledged").isZero();
        assertThat(store.errors(task.id())).as("one PoisonJobError").hasSize(1);
        assertThat(redis.redis().xrange(redis.keys().events(), io.lettuce.core.Range.create("-", "+")))
                .extracting(m -> m.getBody().get("type")).contains("job.dead_lettered");

        // A pass after that finds both and only acknowledges: still one letter.
        h.runner().poisoned(redelivered, 7);
        assertThat(redis.redis().xlen(redis.keys().deadLetters())).isEqualTo(1);
    }

    @Test
    void aPoisonJobWhoseFailureWaitsInTheOutboxAndWhoseLetterWasNeverWrittenGetsItsLetter() throws Exception {
        // An earlier pass recorded the poison while Postgres was away (its failure row went to the outbox) and died before
        // the letter. Postgres is back; no flush has run yet. Before, this pass took the outbox's outcome for a finished
        // run and only acknowledged the entry: no letter, a row naming one that does not exist.
        AgentConfig agent = agent("claude-code", List.of(DEMO_AGENT.toString()));
        Harness h = harness(BudgetMode.LOG, agent);
        TaskRecord task = h.submit("p", 60);
        ClaimedJob claimed = h.claim();
        JobMessage job = claimed.job();
        ResultRecord failed = new ResultRecord(task.id(), job.jobId(), agent.name(), JobStatus.FAILED, "poison", 0, 0, 0, 0,
                BigDecimal.ZERO, "agent", null, 0, 0, null, null, null, "dead-worker", job.attempt(), null);
        ErrorRecord poison = new ErrorRecord(task.id(), job.jobId(), agent.name(), "PoisonJobError", "delivered 5 times", "{}",
                false, null, job.jobId() + "#" + job.attempt() + "#PoisonJobError");
        redis.redis().rpush(redis.keys().outbox(agent.name()), new ObjectMapper().registerModule(
                new com.fasterxml.jackson.datatype.jsr310.JavaTimeModule()).writeValueAsString(
                        new OutcomeRecorder.Spooled(failed, List.of(poison))));

        h.runner().poisoned(new ClaimedJob(claimed.stream(), claimed.entryId(), claimed.fields(), true), 6);

        var letters = redis.redis().xrange(redis.keys().deadLetters(), io.lettuce.core.Range.create("-", "+"));
        assertThat(letters).singleElement().satisfies(m -> assertThat(m.getBody()).containsEntry("dead_from_id", claimed.entryId()));
        assertThat(pending()).as("moved to the dead letters").isZero();
        assertThat(store.errors(task.id())).as("the outbox's flush writes the row, once").isEmpty();
    }

    @Test
    void aJobThatWaitedPastItsTasksLiveStateIsNotStartedWhenPostgresSaysTheTaskWasCancelled() throws Exception {
        // Cancelled on day 1 for an agent nobody served; its live state (with the cancel) expired on day 8; a worker for
        // the agent starts on day 10.
        Path ran = dir.resolve("ran");
        AgentConfig agent = agent("claude-code", List.of("sh", "-c", "echo run >> " + ran));
        Harness h = harness(BudgetMode.LOG, agent);
        long tenDaysAgo = System.currentTimeMillis() - Duration.ofDays(10).toMillis();
        TaskRecord task = h.submitAdded("p", tenDaysAgo);
        TaskRecord other = h.submitAdded("p", tenDaysAgo + 1);
        assertThat(store.cancel("acme", task.id())).isPresent();
        assertThat(redis.redis().exists(redis.keys().task("acme", task.id().toString()))).isZero();

        h.runner().run(h.claim(), new JobControl());

        assertThat(ran).as("the agent never ran").doesNotExist();
        assertThat(store.results(task.id())).extracting(ResultRecord::status).containsExactly(JobStatus.CANCELLED);

        // A task as old that was not cancelled runs, and its live state is written again.
        h.runner().run(h.claim(), new JobControl());
        assertThat(ran).exists();
        assertThat(redis.redis().hget(redis.keys().task("acme", other.id().toString()), "worker:claude-code")).isEqualTo("test-worker");
        assertThat(pending()).isZero();
    }

    @Test
    void anAgentPastItsTimeoutIsKilledAndTheJobFailsWithATimeoutError() throws Exception {
        String fixture = Path.of("src", "test", "resources", "fixtures", "ignore-term.sh").toAbsolutePath().toString();
        Run run = run(BudgetMode.LOG, agent("stubborn", List.of("/bin/bash", fixture, dir.resolve("pids").toString(), "{prompt}")),
                "hang", 50_000, "main", 1);

        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.result.exitCode()).isNull();
        assertThat(run.errors).extracting(ErrorRecord::errorType).contains("TimeoutError");
        assertThat(store.find("acme", run.task.id()).orElseThrow().status()).isEqualTo(TaskStatus.FAILED);
    }

    @Test
    void anAgentsOwnGitRunsNoAutomaticGcInTheSharedClone() throws Exception {
        // What git in the agent's worktree reads: gc.auto and maintenance.auto from the environment the worker gives it.
        Run run = run(BudgetMode.LOG, agent("git-probe", List.of("/bin/bash", "-c",
                        "echo \"$(git config gc.auto) $(git config maintenance.auto)\" >&2; exit 3", "git-probe", "{prompt}")),
                "probe", 50_000, "main", 30);
        assertThat(run.errors).singleElement().satisfies(error ->
                assertThat(JSON.readTree(error.detailsJson()).get("stderr_tail").asText()).isEqualTo("0 false\n"));
    }

    @Test
    void aNonZeroExitFailsTheJobWithTheExitCodeAndStderr() throws Exception {
        Run run = run(BudgetMode.LOG, agent("crasher", List.of("/bin/bash", "-c", "echo boom >&2; exit 3", "crasher", "{prompt}")),
                "crash", 50_000, "main", 30);

        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.result.exitCode()).isEqualTo(3);
        assertThat(run.result.usageSource()).isEqualTo("tokenizer");
        assertThat(run.errors).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("AgentError");
            assertThat(error.errorMessage()).isEqualTo("Agent crasher exited with code 3");
            assertThat(JSON.readTree(error.detailsJson()).get("stderr_tail").asText()).isEqualTo("boom\n");
        });
    }

    @Test
    void aMissingBaseBranchFailsTheJobWithAWorktreeErrorAndReleasesTheReservation() throws Exception {
        Run run = run(BudgetMode.ENFORCE, agent("claude-code", List.of(DEMO_AGENT.toString(), "-p", "{prompt}")),
                "x", 50_000, "no-such-branch", 30);

        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.errors).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("WorktreeError");
            assertThat(error.errorMessage()).contains("base branch 'no-such-branch' does not exist");
        });
        var pool = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8, PeriodLimits.NONE, Clock.systemUTC()).taskPool("acme", run.task.id().toString(), 50_000, 0);
        assertThat(pool.reserved()).isZero();
    }

    @Test
    void aNoopJobCompletesWithZeroUsageWithoutReservationOrWorktreeAndIsAcknowledged() throws Exception {
        AgentConfig noop = new AgentConfig("bench", AgentType.NOOP, List.of(), OutputFormat.TEXT, List.of(), "", "o200k_base", 1_000,
                0, 0, Path.of("/"), dev.kage.agent.RetryPolicy.DEFAULT);
        // A pool too small for the reservation and a base branch that does not exist: either would fail a command agent.
        Run run = run(BudgetMode.ENFORCE, noop, "nothing at all", 10, "no-such-branch", 30);

        assertThat(run.result.status()).isEqualTo(JobStatus.COMPLETED);
        assertThat(run.result.totalTokens()).isZero();
        assertThat(run.result.cost()).isZero();
        assertThat(run.result.usageSource()).isEqualTo("agent");
        assertThat(run.result.branch()).isNull();
        assertThat(run.result.workerId()).isEqualTo("test-worker");
        assertThat(run.errors).isEmpty();
        assertThat(pending()).isZero();
        assertThat(store.find("acme", run.task.id()).orElseThrow().status()).isEqualTo(TaskStatus.COMPLETED);
        assertThat(new LiveTaskState(redis.keys(), redis.redis()).job("acme", run.task.id().toString(), "bench"))
                .contains(JobStatus.COMPLETED);
        // The enqueue-once marker goes a minute after the committed row, not at once: an enqueue whose reply a dropped
        // connection lost is sent again by Lettuce after it reconnects, and must not add the finished job a second time.
        assertThat(redis.redis().pttl(redis.keys().enqueued("bench", run.result.jobId(), 1)))
                .as("the enqueue-once marker expires soon after the committed row").isBetween(1L, 60_000L);
        JobQueue queue = new JobQueue(redis.keys(), redis.redis());
        String stream = redis.keys().jobStream("bench", Priority.NORMAL);
        long entries = redis.redis().xlen(stream);
        assertThat(queue.enqueue(new JobMessage(run.result.jobId(), run.task.id().toString(), "acme", "bench", Priority.NORMAL,
                "nothing at all", "", "no-such-branch", 30, 10, 1))).as("a resent enqueue").isEmpty();
        assertThat(redis.redis().xlen(stream)).isEqualTo(entries);
        var pool = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8, PeriodLimits.NONE, Clock.systemUTC()).taskPool("acme", run.task.id().toString(), 10, 0);
        assertThat(pool.used()).isZero();
        assertThat(pool.reserved()).isZero();
        assertThat(redis.redis().xrange(redis.keys().events(), io.lettuce.core.Range.create("-", "+")))
                .extracting(m -> m.getBody().get("type"))
                .containsExactly("job.started", "job.finished");
        assertThat(dir.resolve("work")).doesNotExist();
    }

    @Test
    void inEnforceModeAnAgentThatKeepsPrintingIsStoppedWithinOneChunkOfItsPool() throws Exception {
        String fixture = Path.of("src", "test", "resources", "fixtures", "print-forever.sh").toAbsolutePath().toString();
        long limit = 20_000;
        Run run = run(BudgetMode.ENFORCE, agent("talker", List.of(fixture, "{prompt}")), "say something", limit, "main", 120);

        // One chunk is one read of the pipe: at most 8 KiB of the fixture's sentence.
        String sentence = "the quick brown fox jumps over the lazy dog while the budget runs out\n";
        long chunkTokens = dev.kage.tokens.TokenCounter.count("o200k_base", sentence.repeat(8192 / sentence.length() + 1));
        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.result.durationMs()).as("stopped, not timed out").isLessThan(60_000);
        assertThat(run.errors).extracting(ErrorRecord::errorType).containsExactly("BudgetExceededError");
        JsonNode details = JSON.readTree(run.errors.getFirst().detailsJson());
        assertThat(details.get("stopped").asBoolean()).isTrue();
        assertThat(details.get("pool").asText()).isEqualTo("task");
        assertThat(details.get("tokens_used").asLong()).as("stopped in the chunk that passed the pool")
                .isGreaterThan(limit).isLessThanOrEqualTo(limit + chunkTokens);
        assertThat(run.errors.getFirst().errorMessage()).startsWith("Agent talker stopped: the task budget was spent after ");
        // Everything it printed until it died is charged, and nothing stays held.
        var pool = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8, PeriodLimits.NONE, Clock.systemUTC())
                .taskPool("acme", run.task.id().toString(), limit, 0);
        assertThat(pool.used()).isEqualTo(run.result.totalTokens()).isGreaterThanOrEqualTo(details.get("tokens_used").asLong());
        assertThat(pool.reserved()).isZero();
        assertThat(run.result.usageSource()).isEqualTo("tokenizer");
    }

    @Test
    void anAgentStoppedBecauseTheTenantsDollarsRanOutSaysDollarsAndNamesThatPool() throws Exception {
        // $15 per million output tokens; the tenant's day holds $0.05 (about 3,300 tokens of answer); tokens have room.
        String fixture = Path.of("src", "test", "resources", "fixtures", "print-forever.sh").toAbsolutePath().toString();
        Run run = run(BudgetMode.ENFORCE, agent("talker", List.of(fixture, "{prompt}")), "say something", 100_000_000, "main",
                120, Map.of("TENANT_MAX_USD_PER_DAY", "0.05"));

        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.errors).extracting(ErrorRecord::errorType).containsExactly("BudgetExceededError");
        assertThat(run.errors.getFirst().errorMessage()).startsWith("Agent talker stopped: the tenant acme day:")
                .contains(" dollar budget was spent after ");
        JsonNode details = JSON.readTree(run.errors.getFirst().detailsJson());
        assertThat(details.get("pool").asText()).isEqualTo("tenant");
        assertThat(details.get("unit").asText()).isEqualTo("usd_micros");
        assertThat(details.get("pool_limit").asLong()).isEqualTo(50_000);
        assertThat(details.get("stopped").asBoolean()).isTrue();
    }

    @Test
    void anAgentStoppedByALimitLoweredWhileItRanNamesTheLimitInForceThen() throws Exception {
        String fixture = Path.of("src", "test", "resources", "fixtures", "print-forever.sh").toAbsolutePath().toString();
        Harness h = harness(BudgetMode.ENFORCE, agent("talker", List.of(fixture, "{prompt}")),
                Map.of("TENANT_MAX_TOKENS_PER_DAY", "1000000000"));
        TaskRecord task = h.submit("say something", 2_000_000_000L, "main", 120);
        BudgetLedger ledger = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8,
                new PeriodLimits(1_000_000_000L, 0, 0, 0), Clock.systemUTC());
        Thread running = Thread.ofVirtual().start(() -> {
            try {
                h.runner().run(h.claim(), new JobControl());
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        // Printing, its hold growing: then an operator lowers the tenant's day to 30,000 tokens.
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(60))
                .until(() -> ledger.tenantPools("acme").getFirst().reserved() > 50_000);
        ledger.setTenantLimits("acme", Map.of(BudgetLedger.DAY_TOKENS, 30_000L));
        running.join(Duration.ofSeconds(60));
        assertThat(running.isAlive()).isFalse();

        List<ErrorRecord> errors = store.errors(task.id());
        assertThat(errors).extracting(ErrorRecord::errorType).containsExactly("BudgetExceededError");
        JsonNode details = JSON.readTree(errors.getFirst().detailsJson());
        assertThat(details.get("pool").asText()).isEqualTo("tenant");
        assertThat(details.get("pool_limit").asLong()).as("the limit that stopped it, not the reservation's").isEqualTo(30_000);
        ledger.clearTenantLimits("acme");
    }

    @Test
    void aRunningAgentStoppedByACancelIsChargedWhatItPrintedAndHoldsNothing() throws Exception {
        Path marker = dir.resolve("sleeper-started");
        JobControl control = new JobControl();
        Thread canceller = Thread.ofVirtual().start(() -> {
            org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> Files.exists(marker));
            control.stop(JobControl.StopReason.CANCELLED);
        });
        Run run = run(BudgetMode.ENFORCE, agent("sleeper", List.of("/bin/bash", "-c",
                "echo some words before the cancel; touch '" + marker + "'; sleep 60", "sleeper", "{prompt}")), "wait", 50_000,
                "main", 120, Map.of(), control);
        canceller.join();

        assertThat(run.result.status()).isEqualTo(JobStatus.CANCELLED);
        // The stop path settles: nothing stays held, and the words printed before the cancel are charged.
        var pool = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8, PeriodLimits.NONE, Clock.systemUTC())
                .taskPool("acme", run.task.id().toString(), 50_000, 0);
        assertThat(pool.reserved()).isZero();
        assertThat(pool.used()).isGreaterThan(dev.kage.tokens.TokenCounter.count("o200k_base", "wait"));
        // Its row says what the budgets were charged (the reports and the seed's queries read the rows), not "free".
        assertThat(run.result.totalTokens()).isEqualTo(pool.used());
        assertThat(run.result.usageSource()).isEqualTo("estimate");
        assertThat(store.results(run.task.id())).singleElement().satisfies(row -> {
            assertThat(row.status()).isEqualTo(JobStatus.CANCELLED);
            assertThat(row.totalTokens()).isEqualTo(pool.used());
        });
    }

    @Test
    void aRunWhoseSettlementMeetsARedisOutageIsSettledWhenRedisAnswersAndRecordedOnceNotRunAgain() throws Exception {
        // The ledger reaches Redis through a proxy that stalls (a failover, a hung server) as the agent exits: its
        // settle times out. Given up at once, the finished run was thrown away and its entry ran again elsewhere.
        Path starts = dir.resolve("starts");
        Path exiting = dir.resolve("exiting");
        AgentConfig agent = agent("sleeper", List.of("/bin/bash", "-c", "echo started >> '" + starts + "'; echo the work is done; "
                + "touch '" + exiting + "'; sleep 1", "sleeper", "{prompt}"));
        URI url = URI.create(TestServices.redisUrl());
        ch.qos.logback.core.read.ListAppender<ch.qos.logback.classic.spi.ILoggingEvent> log = new ch.qos.logback.core.read.ListAppender<>();
        ch.qos.logback.classic.Logger logger = (ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(JobRunner.class);
        log.start();
        logger.addAppender(log);
        try (dev.kage.testing.TcpProxy proxy = dev.kage.testing.TcpProxy.start(url.getHost(), url.getPort() > 0 ? url.getPort() : 6379)) {
            io.lettuce.core.RedisURI proxied = io.lettuce.core.RedisURI.create(
                    dev.kage.testing.TcpProxy.redirectRedisUrl(TestServices.redisUrl(), proxy));
            proxied.setTimeout(Duration.ofSeconds(1));
            io.lettuce.core.RedisClient client = io.lettuce.core.RedisClient.create(proxied);
            try (var ledgerConnection = client.connect(dev.kage.redis.Utf8Codec.INSTANCE)) {
                // BUDGET_MODE=log and a task budget of 1 token: the run is let through and its settlement passes the
                // budget, which its violation row must say although the settle's first answer was lost.
                Harness h = harness(BudgetMode.LOG, agent, Map.of(), origin.toString(), ledgerConnection.sync());
                TaskRecord task = h.submit("finish during an outage", 1, "main", 60);
                Thread outage = Thread.ofVirtual().start(() -> {
                    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> Files.exists(exiting));
                    proxy.stall();
                    // Redis comes back once the runner has said it waits for it.
                    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> log.list.stream()
                            .anyMatch(e -> e.getFormattedMessage().contains("Redis cannot settle its usage now")));
                    proxy.resume();
                });
                h.runner().run(h.claim(), new JobControl());
                outage.join();

                assertThat(Files.readAllLines(starts)).as("the agent ran once").hasSize(1);
                assertThat(store.results(task.id())).singleElement().satisfies(row -> {
                    assertThat(row.status()).isEqualTo(JobStatus.COMPLETED);
                    assertThat(row.commitSha()).isNotNull();
                });
                assertThat(pending()).as("acknowledged").isZero();
                var pool = new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.LOG, 0.8, PeriodLimits.NONE, Clock.systemUTC())
                        .taskPool("acme", task.id().toString(), 1, 0);
                assertThat(pool.reserved()).as("settled, nothing left held").isZero();
                assertThat(pool.used()).isEqualTo(store.results(task.id()).getFirst().totalTokens()).isPositive();
                assertThat(store.errors(task.id())).extracting(ErrorRecord::errorType).containsExactly("BudgetExceededError");
            } finally {
                client.shutdown();
            }
        } finally {
            logger.detachAppender(log);
        }
    }

    @Test
    void inEnforceModeAJobThatDoesNotFitItsTenantsDayDoesNotStartAndTheRowNamesThePool() throws Exception {
        Run run = run(BudgetMode.ENFORCE, agent("claude-code", List.of(DEMO_AGENT.toString(), "-p", "{prompt}")), "x", 50_000,
                "main", 30, Map.of("TENANT_MAX_TOKENS_PER_DAY", "500"));

        assertThat(run.result.status()).isEqualTo(JobStatus.FAILED);
        assertThat(run.result.branch()).as("no worktree was made").isNull();
        assertThat(run.errors).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("BudgetExceededError");
            assertThat(error.errorMessage()).matches("Tenant acme would exceed its token budget for day \\d{4}-\\d{2}-\\d{2}: \\d+ > 500");
            JsonNode details = JSON.readTree(error.detailsJson());
            assertThat(details.get("pool").asText()).isEqualTo("tenant");
            assertThat(details.get("pool_limit").asLong()).isEqualTo(500);
            assertThat(details.get("unit").asText()).isEqualTo("tokens");
            assertThat(details.get("usage_stats").has("percent_used")).isTrue();
            // The seed's top-level figures are the task budget's only: its dashboard query averages them as ::int over
            // every BudgetExceededError, and a tenant's month in micro-USD (or tokens past 2^31) made it fail.
            assertThat(details.has("tokens_used")).isFalse();
            assertThat(details.has("token_limit")).isFalse();
        });
        String seedAverage = "SELECT count(*) AS violations, AVG((error_details->>'tokens_used')::int) AS avg_tokens_used "
                + "FROM task_errors WHERE error_type = 'BudgetExceededError'";
        db.database().jdbi().useHandle(h -> h.execute("""
                INSERT INTO task_errors (task_id, job_id, cli_name, error_type, error_message, error_details, retryable)
                SELECT task_id, job_id || '-usd', cli_name, error_type, error_message,
                       jsonb_set(error_details, '{pool_limit}', '5000000000'), retryable
                FROM task_errors WHERE task_id = ?::uuid""", run.task.id().toString()));
        Map<String, Object> averaged = db.database().jdbi().withHandle(h -> h.createQuery(seedAverage).mapToMap().one());
        assertThat(averaged).as("the seed's query runs over pool rows of any size").containsEntry("violations", 2L);
        assertThat(pending()).isZero();
    }

    private FleetRateLimiter limiter(KageKeys keys, AgentCatalog catalog, KageSettings settings) {
        FleetRateLimiter limiter = new FleetRateLimiter(keys, redisson, FleetRateLimiter.FailureMode.CLOSED, meters);
        catalog.limitGroups(settings.rateLimit()).forEach(limiter::configure);
        return limiter;
    }

    private Run run(BudgetMode mode, AgentConfig agent, String description, long tokenLimit, String baseBranch, int timeout)
            throws Exception {
        return run(mode, agent, description, tokenLimit, baseBranch, timeout, Map.of());
    }

    private Run run(BudgetMode mode, AgentConfig agent, String description, long tokenLimit, String baseBranch, int timeout,
                    Map<String, String> extraEnv) throws Exception {
        return run(mode, agent, description, tokenLimit, baseBranch, timeout, extraEnv, new JobControl());
    }

    /** A runner for one agent, and the steps of a job's life up to its run. */
    private Harness harness(BudgetMode mode, AgentConfig agent) {
        return harness(mode, agent, Map.of());
    }

    private Harness harness(BudgetMode mode, AgentConfig agent, Map<String, String> extraEnv) {
        return harness(mode, agent, extraEnv, origin.toString());
    }

    private Harness harness(BudgetMode mode, AgentConfig agent, Map<String, String> extraEnv, String defaultRepo) {
        return harness(mode, agent, extraEnv, defaultRepo, redis.redis());
    }

    /** @param ledgerRedis the connection the budget ledger uses (one through a proxy, to make Redis fail for it alone) */
    private Harness harness(BudgetMode mode, AgentConfig agent, Map<String, String> extraEnv, String defaultRepo,
                            io.lettuce.core.api.sync.RedisCommands<String, String> ledgerRedis) {
        KageKeys keys = redis.keys();
        Map<String, String> env = TestServices.environment(redis.namespace(), db.schema());
        env.put("BUDGET_MODE", mode.name());
        env.putAll(extraEnv);
        KageSettings settings = KageSettings.load(Env.of(env));
        AgentCatalog catalog = new AgentCatalog(List.of(agent));
        WorkerSettings worker = new WorkerSettings("test-worker", dir.resolve("work"), defaultRepo, List.of(agent.name()),
                true, Duration.ofSeconds(5), 2);
        JobQueue queue = new JobQueue(keys, redis.redis());
        LiveTaskState live = new LiveTaskState(keys, redis.redis());
        JobRunner runner = new JobRunner(settings, worker, catalog, queue, store, live,
                new EventLog(keys, redis.redis(), Clock.systemUTC()),
                new BudgetLedger(keys, ledgerRedis, mode, 0.8, settings.budget().tenantDefaults(), Clock.systemUTC()),
                limiter(keys, catalog, settings), new WorktreeManager(worker.workDir()), new ProcessRunner(),
                new OutcomeRecorder(store, keys, redis.redis()), redis.pipeline(), Clock.systemUTC(), new WorkerMetrics(meters));
        return new Harness(agent, queue, runner);
    }

    private final class Harness {
        private final AgentConfig agent;
        private final JobQueue queue;
        private final JobRunner runner;

        Harness(AgentConfig agent, JobQueue queue, JobRunner runner) {
            this.agent = agent;
            this.queue = queue;
            this.runner = runner;
        }

        JobRunner runner() {
            return runner;
        }

        TaskRecord submit(String description, int timeout) {
            return submit(description, 100_000, "main", timeout);
        }

        TaskRecord submit(String description, long tokenLimit, String baseBranch, int timeout) {
            TaskRecord task = task(description, tokenLimit, baseBranch, timeout);
            queue.enqueue(job(task));
            return task;
        }

        /** A task whose job's entry was added at {@code addedAtMillis} (Redis's clock), long ago; no live state. */
        TaskRecord submitAdded(String description, long addedAtMillis) {
            TaskRecord task = task(description, 100_000, "main", 60);
            redis.redis().xadd(redis.keys().jobStream(agent.name(), Priority.NORMAL),
                    new io.lettuce.core.XAddArgs().id(addedAtMillis + "-0"), job(task).toFields());
            return task;
        }

        private TaskRecord task(String description, long tokenLimit, String baseBranch, int timeout) {
            TaskRecord task = new TaskRecord(UUID.randomUUID(), "acme", description, TaskStatus.QUEUED, Priority.NORMAL, null,
                    baseBranch, List.of(new Assignment(agent.name(), timeout)), null, tokenLimit, Instant.now(), Instant.now(), null);
            store.insert(task);
            queue.ensureStreams(agent.name());
            return task;
        }

        private JobMessage job(TaskRecord task) {
            String id = task.id().toString();
            Assignment assignment = task.assignments().getFirst();
            return new JobMessage(JobMessage.jobId(id, agent.name()), id, "acme", agent.name(), Priority.NORMAL, task.description(),
                    "", task.baseBranch(), assignment.timeoutSeconds(), task.tokenLimit(), 1);
        }

        ClaimedJob claim() {
            List<ClaimedJob> claimed = queue.read(blocking.sync(), agent.name(), "test-worker", Duration.ofSeconds(1));
            assertThat(claimed).hasSize(1);
            return claimed.getFirst();
        }
    }

    private Run run(BudgetMode mode, AgentConfig agent, String description, long tokenLimit, String baseBranch, int timeout,
                    Map<String, String> extraEnv, JobControl control) throws Exception {
        Harness h = harness(mode, agent, extraEnv);
        TaskRecord task = h.submit(description, tokenLimit, baseBranch, timeout);
        h.runner().run(h.claim(), control);
        ResultRecord result = store.results(task.id()).getFirst();
        return new Run(task, result, store.errors(task.id()));
    }

    private long pending() {
        long total = 0;
        for (String agent : List.of("claude-code", "stubborn", "crasher", "bench", "talker", "sleeper")) {
            for (Priority p : Priority.values()) {
                String stream = redis.keys().jobStream(agent, p);
                if (redis.redis().exists(stream) == 1) {
                    total += redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount();
                }
            }
        }
        return total;
    }

    private static AgentConfig agent(String name, List<String> argv) {
        return new AgentConfig(name, AgentType.COMMAND, argv, OutputFormat.CLAUDE_JSON, List.of(), "demo", "o200k_base", 1_000,
                3.0, 15.0, Path.of("/"), new dev.kage.agent.RetryPolicy(1, java.util.Set.of(), false));
    }

    private record Run(TaskRecord task, ResultRecord result, List<ErrorRecord> errors) {
    }
}
