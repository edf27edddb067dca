package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentLimits;
import dev.kage.agent.AgentType;
import dev.kage.agent.OutputFormat;
import dev.kage.agent.RetryPolicy;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.PeriodLimits;
import dev.kage.config.BudgetMode;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.ratelimit.Limit;
import dev.kage.redis.KageKeys;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobMessage;
import dev.kage.task.JobStatus;
import dev.kage.task.LiveTaskState;
import dev.kage.task.Priority;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.ScriptedModelServer;
import dev.kage.testing.TestServices;
import dev.kage.worker.WorkerSettings;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.worktree.GitTestRepos;
import dev.kage.worker.worktree.WorktreeManager;
import io.lettuce.core.Range;
import io.lettuce.core.api.StatefulRedisConnection;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.redisson.api.RedissonClient;

/**
 * A job meeting rate limits, through the real runner, Redis, Postgres and agent processes: a 429 is a
 * fleet-wide pause and a deferral of the same attempt, never a failed attempt, until the retries run out.
 */
class RateLimitedRunTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Prints what Claude Code prints when the API answers 429, and exits 1; records each start in $1. */
    private static final String RATE_LIMITED = "echo started >> \"$1\"; "
            + "echo '{\"type\":\"result\",\"is_error\":true,\"result\":\"API Error: 429 {\\\"type\\\":\\\"error\\\",\\\"error\\\":"
            + "{\\\"type\\\":\\\"rate_limit_error\\\"}} retry-after: 2\"}'; exit 1";

    @TempDir
    Path dir;

    private final RedisFixture redis = new RedisFixture();
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();
    private RedissonClient redisson;
    private StatefulRedisConnection<String, String> blocking;
    private Path origin;
    private FleetRateLimiter limiter;
    private JobQueue queue;

    @BeforeEach
    void setUp() throws Exception {
        origin = GitTestRepos.create(dir.resolve("origin"));
        redisson = FleetRateLimiter.client(TestServices.redisUrl());
        blocking = redis.client().connect();
        limiter = new FleetRateLimiter(redis.keys(), redisson, FleetRateLimiter.FailureMode.CLOSED, new SimpleMeterRegistry());
        queue = new JobQueue(redis.keys(), redis.redis());
    }

    @AfterEach
    void tearDown() {
        blocking.close();
        redisson.shutdown();
        redis.close();
        db.close();
    }

    @Test
    void a429PausesTheGroupFleetWideAndDefersTheSameAttemptWithARetryableRow() throws Exception {
        Path starts = dir.resolve("starts");
        AgentConfig agent = agent("claude-code", "/bin/bash", "-c", RATE_LIMITED, "agent", starts.toString(), "{prompt}");
        Job job = submit(agent, 0);
        runner(agent, Map.of()).run(job.claimed(), new JobControl());

        assertThat(Files.readAllLines(starts)).hasSize(1);
        assertThat(store.results(job.task().id())).as("no outcome: the job is not finished").isEmpty();
        List<ErrorRecord> errors = store.errors(job.task().id());
        assertThat(errors).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("RateLimitError");
            assertThat(error.retryable()).isTrue();
            JsonNode details = JSON.readTree(error.detailsJson());
            assertThat(details.get("rate_limit_retry").asInt()).isEqualTo(1);
            assertThat(details.get("retry_after_ms").asLong()).isEqualTo(2_000);
            assertThat(details.get("backoff_ms").asLong()).as("Retry-After 2 s beats the first backoff of 1 s").isEqualTo(2_000);
            assertThat(details.get("final").asBoolean()).isFalse();
        });
        assertThat(redis.redis().pttl(redis.keys().cooldown("claude-code"))).as("fleet-wide pause").isBetween(1_000L, 2_000L);
        assertThat(limiter.state("claude-code").orElseThrow().effective()).as("rate halved").isEqualTo(25);

        JobMessage deferred = delayedJob("claude-code");
        assertThat(deferred.attempt()).as("a rate-limit deferral is not a failed attempt").isEqualTo(1);
        assertThat(deferred.rateLimitRetries()).isEqualTo(1);
        assertThat(redis.redis().xpending(job.claimed().stream(), KageKeys.WORKER_GROUP).getCount()).isZero();
        assertThat(store.find("acme", job.task().id()).orElseThrow().status()).isNotEqualTo(TaskStatus.FAILED);
    }

    /**
     * What gemini-cli 0.61 does with {@code --output-format json} when the API answers 429 (read from its bundle:
     * {@code handleError} → {@code JsonFormatter.formatError} on standard error, then {@code process.exit(429)}, which
     * the OS reports as 173).
     */
    private static final String GEMINI_QUOTA = "echo started >> \"$1\"; cat >&2 <<'JSON'\n"
            + "{\n  \"session_id\": \"5b2c9f1e-0d7a-4c55-9d0e-8a1f3b6c2e47\",\n  \"error\": {\n    \"type\": \"Error\",\n"
            + "    \"message\": \"{\\\"error\\\":{\\\"code\\\":429,\\\"message\\\":\\\"Resource has been exhausted (e.g. check quota).\\\","
            + "\\\"status\\\":\\\"RESOURCE_EXHAUSTED\\\"}}\",\n    \"code\": 429\n  }\n}\nJSON\nexit 173";

    @Test
    void geminiClisQuotaErrorIsARateLimitSignalToo() throws Exception {
        Path starts = dir.resolve("starts");
        AgentConfig agent = new AgentConfig("gemini-cli", AgentType.COMMAND,
                List.of("/bin/bash", "-c", GEMINI_QUOTA, "agent", starts.toString(), "{prompt}"), OutputFormat.GEMINI_JSON, List.of(),
                "gemini-2.5-pro", "o200k_base", 1_000, 1.25, 10.0, Path.of("/"), new RetryPolicy(1, Set.of(), false),
                AgentLimits.defaults("gemini-cli"));
        Job job = submit(agent, 0);
        runner(agent, Map.of()).run(job.claimed(), new JobControl());

        assertThat(Files.readAllLines(starts)).hasSize(1);
        assertThat(store.results(job.task().id())).as("deferred, not finished").isEmpty();
        assertThat(store.errors(job.task().id())).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("RateLimitError");
            assertThat(error.retryable()).isTrue();
            assertThat(JSON.readTree(error.detailsJson()).get("output_tail").asText()).contains("RESOURCE_EXHAUSTED");
        });
        assertThat(redis.redis().pttl(redis.keys().cooldown("gemini-cli"))).as("fleet-wide pause").isPositive();
        assertThat(delayedJob("gemini-cli").attempt()).isEqualTo(1);
    }

    @Test
    void afterTheLastRetryThe429FailsTheJobWithAFinalRateLimitErrorRow() throws Exception {
        Path starts = dir.resolve("starts");
        AgentConfig agent = agent("claude-code", "/bin/bash", "-c", RATE_LIMITED, "agent", starts.toString(), "{prompt}");
        Job job = submit(agent, 2);
        runner(agent, Map.of("RATE_LIMIT_MAX_RETRIES", "2")).run(job.claimed(), new JobControl());

        assertThat(store.results(job.task().id())).singleElement()
                .satisfies(result -> assertThat(result.status()).isEqualTo(JobStatus.FAILED));
        assertThat(store.errors(job.task().id())).singleElement().satisfies(error -> {
            assertThat(error.errorType()).isEqualTo("RateLimitError");
            assertThat(error.retryable()).isFalse();
            assertThat(error.errorMessage()).contains("still rate limited after 2 retries");
            assertThat(JSON.readTree(error.detailsJson()).get("final").asBoolean()).isTrue();
        });
        assertThat(queue.delayed("claude-code")).isZero();
        assertThat(store.find("acme", job.task().id()).orElseThrow().status()).isEqualTo(TaskStatus.FAILED);
    }

    @Test
    void duringAFleetWideCooldownTheJobIsDeferredWithoutStartingTheAgent() throws Exception {
        Path starts = dir.resolve("starts");
        AgentConfig agent = agent("claude-code", "/bin/bash", "-c", "echo started >> \"$1\"; echo '{\"result\":\"ok\"}'",
                "agent", starts.toString(), "{prompt}");
        Job job = submit(agent, 0);
        JobRunner runner = runner(agent, Map.of());
        limiter.coolDown("claude-code", Duration.ofSeconds(20));
        runner.run(job.claimed(), new JobControl());

        assertThat(starts).doesNotExist();
        assertThat(store.errors(job.task().id())).isEmpty();
        JobMessage deferred = delayedJob("claude-code");
        assertThat(deferred.attempt()).isEqualTo(1);
        assertThat(deferred.rateLimitRetries()).as("waiting out a pause is not a 429 of this job").isZero();
        double due = redis.redis().zrangeWithScores(redis.keys().delayedJobs("claude-code"), 0, 0).getFirst().getScore();
        assertThat(Instant.ofEpochMilli((long) due)).isAfter(Instant.now().plusSeconds(15));
    }

    /** What the claim loop asks before it reads an agent's streams: it takes only as many jobs as can get a permit. */
    @Test
    void theClaimGateTakesOnlyWhatTheLimitGroupCanGrantWithinTheSlotWaitAndNothingWhileItIsPaused() throws Exception {
        AgentConfig agent = agent("claude-code", "/bin/bash", "-c", "echo '{\"result\":\"ok\"}'", "agent", "{prompt}");
        // A slot wait of 1 ms: no held permit is released within it, so only free permits count.
        JobRunner runner = runner(agent, Map.of("RATE_LIMIT_MAX_SLOT_WAIT_SECONDS", "0.001"));
        String group = agent.limits().group();
        Limit configured = limiter.state(group).orElseThrow().limit();
        long limit = configured.requests();
        assertThat(runner.claimGate("claude-code", 3)).isEqualTo(new JobRunner.ClaimGate(3, Duration.ZERO));
        // Take all but two permits of the window: two jobs may be claimed, not five.
        for (long i = 0; i < limit - 2; i++) {
            assertThat(limiter.tryAcquire(group, "other-" + i, dev.kage.task.Priority.NORMAL, 0).granted()).isTrue();
        }
        assertThat(runner.claimGate("claude-code", 5).jobs()).isEqualTo(2);
        for (long i = 0; i < 2; i++) {
            assertThat(limiter.tryAcquire(group, "more-" + i, dev.kage.task.Priority.NORMAL, 0).granted()).isTrue();
        }
        // Full: none, and look again when the oldest permit is about to be released (within the window and its guard).
        JobRunner.ClaimGate full = runner.claimGate("claude-code", 5);
        assertThat(full.jobs()).isZero();
        assertThat(full.lookAgainIn()).isBetween(JobRunner.MIN_CLAIM_LOOK, configured.window().plus(configured.guard()).plusMillis(1));
        // A caller already waiting for a permit comes first: still none.
        assertThat(limiter.tryAcquire(group, "waiting", dev.kage.task.Priority.NORMAL, 0).granted()).isFalse();
        assertThat(runner.claimGate("claude-code", 5).jobs()).isZero();
        // With a slot wait longer than the window every held permit is released within it: the permits not promised to
        // the waiting caller may be claimed for.
        JobRunner patient = runner(agent, Map.of("RATE_LIMIT_MAX_SLOT_WAIT_SECONDS",
                Long.toString(configured.window().plus(configured.guard()).toSeconds() + 2)));
        assertThat(patient.claimGate("claude-code", 5).jobs()).isEqualTo((int) Math.min(5, limit - 1));
        // Paused fleet-wide after a 429: none until the pause ends.
        limiter.coolDown(group, Duration.ofSeconds(20));
        JobRunner.ClaimGate paused = runner.claimGate("claude-code", 5);
        assertThat(paused.jobs()).isZero();
        assertThat(paused.lookAgainIn()).isBetween(Duration.ofSeconds(15), Duration.ofSeconds(20));
        // An agent this worker does not know is not held back (the permit step decides).
        assertThat(runner.claimGate("not-configured-here", 4)).isEqualTo(new JobRunner.ClaimGate(4, Duration.ZERO));
    }

    @Test
    void afterA429sPauseTheClaimGateTakesOneJobTheProbeAndTheRestOnceItRanWithoutA429() throws Exception {
        AgentConfig agent = agent("claude-code", "/bin/bash", "-c", "echo '{\"result\":\"ok\"}'", "agent", "{prompt}");
        JobRunner runner = runner(agent, Map.of());
        String group = agent.limits().group();
        limiter.coolDown(group, Duration.ofSeconds(20));
        redis.redis().del(redis.keys().cooldown(group)); // the pause is over
        assertThat(runner.claimGate("claude-code", 5).jobs()).as("the probe's job only").isEqualTo(1);
        Job job = submit(agent, 0);
        runner.run(job.claimed(), new JobControl());
        assertThat(store.results(job.task().id())).singleElement()
                .satisfies(result -> assertThat(result.status()).isEqualTo(JobStatus.COMPLETED));
        assertThat(redis.redis().hget(redis.keys().limiter(group), "probe")).as("its run answered the probe").isNull();
        assertThat(runner.claimGate("claude-code", 5).jobs()).as("open again for every slot").isEqualTo(5);
    }

    @Test
    void aPermitFurtherAwayThanTheSlotWaitSendsTheJobToTheDelayedSetInsteadOfHoldingTheSlot() throws Exception {
        Path starts = dir.resolve("starts");
        AgentConfig agent = agent("codex", "/bin/bash", "-c", "echo started >> \"$1\"; echo '{\"result\":\"ok\"}'",
                "agent", starts.toString(), "{prompt}");
        Job job = submit(agent, 0);
        JobRunner runner = runner(agent, Map.of("MAX_REQUESTS_PER_MINUTE", "1", "RATE_LIMIT_MAX_SLOT_WAIT_SECONDS", "0.5"));
        assertThat(limiter.tryAcquire("codex", "someone-else", Priority.NORMAL, 0).granted()).isTrue();
        long started = System.nanoTime();
        runner.run(job.claimed(), new JobControl());

        assertThat(Duration.ofNanos(System.nanoTime() - started)).as("did not sit out the minute in the slot")
                .isLessThan(Duration.ofSeconds(30));
        assertThat(starts).doesNotExist();
        assertThat(delayedJob("codex").attempt()).isEqualTo(1);
        assertThat(store.errors(job.task().id())).isEmpty();
    }

    @Test
    void aShortWaitIsSpentInTheSlotAndTheAgentRunsOnce() throws Exception {
        Path starts = dir.resolve("starts");
        AgentConfig agent = agent("codex", "/bin/bash", "-c", "echo started >> \"$1\"; echo '{\"result\":\"about rate limits and 429s\"}'",
                "agent", starts.toString(), "{prompt}");
        Job job = submit(agent, 0);
        JobRunner runner = runner(agent, Map.of("MAX_REQUESTS_PER_MINUTE", "1", "RATE_LIMIT_WINDOW_SECONDS", "1",
                "RATE_LIMIT_MAX_SLOT_WAIT_SECONDS", "5"));
        assertThat(limiter.tryAcquire("codex", "someone-else", Priority.NORMAL, 0).granted()).isTrue();
        runner.run(job.claimed(), new JobControl());

        assertThat(Files.readAllLines(starts)).hasSize(1);
        assertThat(store.results(job.task().id())).singleElement().satisfies(result -> {
            assertThat(result.status()).as("an answer that talks about 429s is not a 429").isEqualTo(JobStatus.COMPLETED);
        });
        assertThat(queue.delayed("codex")).isZero();
    }

    @Test
    void anOpenAiCompatibleEndpointsRetryAfterPausesTheGroupAndItsQuotaHeadersLowerTheRate() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(ScriptedModelServer.Reply.tooManyRequests(3),
                    ScriptedModelServer.Reply.ok("the answer", 30, 7).withHeaders(Map.of("x-ratelimit-limit-requests", "100",
                            "x-ratelimit-remaining-requests", "4", "x-ratelimit-reset-requests", "6m0s")));
            AgentConfig agent = httpAgent("gpt", AgentType.OPENAI_COMPATIBLE, server.openAiBaseUrl());
            Job job = submit(agent, 0);
            runner(agent, Map.of()).run(job.claimed(), new JobControl());

            assertThat(server.requests()).singleElement().satisfies(request -> {
                assertThat(request.path()).isEqualTo("/v1/chat/completions");
                assertThat(JSON.readTree(request.body()).at("/messages/0/content").asText()).isEqualTo("do it");
            });
            assertThat(redis.redis().pttl(redis.keys().cooldown("gpt"))).as("Retry-After 3 s, fleet-wide").isBetween(2_000L, 3_000L);
            assertThat(store.errors(job.task().id())).singleElement()
                    .satisfies(error -> assertThat(error.errorType()).isEqualTo("RateLimitError"));
            JobMessage deferred = delayedJob("gpt");
            assertThat(deferred.rateLimitRetries()).isEqualTo(1);

            // The same attempt, claimed again once the pause is over: it completes with the reply's usage.
            redis.redis().del(redis.keys().cooldown("gpt"));
            promoteNow("gpt");
            ClaimedJob again = queue.read(blocking.sync(), "gpt", "test-worker", Duration.ofSeconds(1)).getFirst();
            runner(agent, Map.of()).run(again, new JobControl());
            assertThat(store.results(job.task().id())).singleElement().satisfies(result -> {
                assertThat(result.status()).isEqualTo(JobStatus.COMPLETED);
                assertThat(result.outputSummary()).isEqualTo("the answer");
                assertThat(result.tokensIn()).isEqualTo(30);
                assertThat(result.tokensOut()).isEqualTo(7);
                assertThat(result.usageSource()).isEqualTo("agent");
                assertThat(result.attempt()).isEqualTo(1);
            });
            assertThat(limiter.state("gpt").orElseThrow().effective())
                    .as("halved by the 429; 4 of 100 left lowers it at most once per window, and it was lowered just now")
                    .isEqualTo(25);
            assertThat(redis.redis().hget(redis.keys().limiter("gpt"), "probe"))
                    .as("the first call after the pause was the probe; its answer opened the group for everyone").isNull();
        }
    }

    @Test
    void anthropicsOverloadedAnswerIsARateLimitSignalAndItsUsageIsRead() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(ScriptedModelServer.Reply.overloaded(), ScriptedModelServer.Reply.ok("hi", 11, 3).withHeaders(Map.of(
                    "anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "0",
                    "anthropic-ratelimit-requests-reset", Instant.now().plusSeconds(5).toString())));
            AgentConfig agent = httpAgent("claude-api", AgentType.ANTHROPIC, server.anthropicBaseUrl());
            Job job = submit(agent, 0);
            runner(agent, Map.of()).run(job.claimed(), new JobControl());
            assertThat(server.requests().getFirst().path()).isEqualTo("/v1/messages");
            assertThat(server.requests().getFirst().headers()).containsEntry("anthropic-version", "2023-06-01");
            assertThat(redis.redis().pttl(redis.keys().cooldown("claude-api"))).as("no Retry-After: the first backoff, 1 s")
                    .isBetween(1L, 1_000L);
            JobMessage deferred = delayedJob("claude-api");
            redis.redis().del(redis.keys().cooldown("claude-api"));
            promoteNow("claude-api");
            runner(agent, Map.of()).run(queue.read(blocking.sync(), "claude-api", "test-worker", Duration.ofSeconds(1)).getFirst(),
                    new JobControl());
            assertThat(store.results(job.task().id())).singleElement().satisfies(result -> {
                assertThat(result.status()).isEqualTo(JobStatus.COMPLETED);
                assertThat(result.tokensIn()).isEqualTo(11);
                assertThat(result.tokensOut()).isEqualTo(3);
            });
            assertThat(redis.redis().pttl(redis.keys().cooldown("claude-api")))
                    .as("the provider's quota is spent until its reset: the fleet pauses until then").isBetween(3_000L, 5_000L);
        }
    }

    private static AgentConfig httpAgent(String name, AgentType type, String baseUrl) {
        return new AgentConfig(name, type, List.of(), OutputFormat.TEXT, List.of(), "scripted-model", "o200k_base", 1_000,
                dev.kage.tokens.Prices.of(3.0, 15.0), Path.of("/"), new RetryPolicy(1, Set.of(), false), AgentLimits.defaults(name),
                new AgentConfig.HttpEndpoint(baseUrl, null, 256), PeriodLimits.NONE);
    }

    private JobRunner runner(AgentConfig agent, Map<String, String> extra) {
        Map<String, String> env = new HashMap<>(TestServices.environment(redis.namespace(), db.schema()));
        env.putAll(extra);
        KageSettings settings = KageSettings.load(Env.of(env));
        AgentCatalog catalog = new AgentCatalog(List.of(agent));
        WorkerSettings worker = new WorkerSettings("test-worker", dir.resolve("work"), origin.toString(), List.of(agent.name()),
                false, Duration.ofSeconds(5), 0);
        catalog.limitGroups(settings.rateLimit()).forEach(limiter::configure);
        KageKeys keys = redis.keys();
        return new JobRunner(settings, worker, catalog, queue, store, new LiveTaskState(keys, redis.redis()),
                new EventLog(keys, redis.redis(), Clock.systemUTC()), new BudgetLedger(keys, redis.redis(), BudgetMode.LOG, 0.8, PeriodLimits.NONE, Clock.systemUTC()),
                limiter, new WorktreeManager(worker.workDir()), new ProcessRunner(), new OutcomeRecorder(store, keys, redis.redis()), redis.pipeline(),
                Clock.systemUTC(), new dev.kage.worker.metrics.WorkerMetrics(new SimpleMeterRegistry()));
    }

    private Job submit(AgentConfig agent, int rateLimitRetries) {
        TaskRecord task = new TaskRecord(UUID.randomUUID(), "acme", "do it", TaskStatus.QUEUED, Priority.NORMAL, null, "main",
                List.of(new Assignment(agent.name(), 30)), null, 50_000, Instant.now(), Instant.now(), null);
        store.insert(task);
        queue.ensureStreams(agent.name());
        queue.enqueue(new JobMessage(JobMessage.jobId(task.id().toString(), agent.name()), task.id().toString(), "acme",
                agent.name(), Priority.NORMAL, "do it", "", "main", 30, 50_000, 1, rateLimitRetries));
        List<ClaimedJob> claimed = queue.read(blocking.sync(), agent.name(), "test-worker", Duration.ofSeconds(1));
        assertThat(claimed).hasSize(1);
        return new Job(task, claimed.getFirst());
    }

    /** Makes the agent's delayed job due now and moves it to its stream, as the promoter does when it is due. */
    private void promoteNow(String agent) {
        String key = redis.keys().delayedJobs(agent);
        redis.redis().zadd(key, 0, redis.redis().zrange(key, 0, 0).getFirst());
        assertThat(queue.promoteDue(agent)).isEqualTo(1);
    }

    private JobMessage delayedJob(String agent) throws Exception {
        List<String> members = redis.redis().zrangebyscore(redis.keys().delayedJobs(agent), Range.unbounded());
        assertThat(members).hasSize(1);
        Map<String, String> fields = new HashMap<>();
        JSON.readTree(members.getFirst()).fields().forEachRemaining(e -> fields.put(e.getKey(), e.getValue().asText()));
        return JobMessage.fromFields(fields);
    }

    private static AgentConfig agent(String name, String... argv) {
        return new AgentConfig(name, AgentType.COMMAND, List.of(argv), OutputFormat.CLAUDE_JSON, List.of(), "demo", "o200k_base",
                1_000, 3.0, 15.0, Path.of("/"), new RetryPolicy(1, Set.of(), false), AgentLimits.defaults(name));
    }

    private record Job(TaskRecord task, ClaimedJob claimed) {
    }
}
