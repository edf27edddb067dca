package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentLimits;
import dev.kage.agent.AgentType;
import dev.kage.agent.OutputFormat;
import dev.kage.agent.RetryPolicy;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.BudgetLedger.PoolState;
import dev.kage.budget.PeriodLimits;
import dev.kage.config.BudgetMode;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.redis.KageKeys;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.JobMessage;
import dev.kage.task.JobStatus;
import dev.kage.task.LiveTaskState;
import dev.kage.task.Priority;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.ScriptedModelServer;
import dev.kage.testing.ScriptedModelServer.Reply;
import dev.kage.testing.TestServices;
import dev.kage.tokens.TokenCounter;
import dev.kage.worker.WorkerSettings;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.worktree.WorktreeManager;
import io.lettuce.core.api.StatefulRedisConnection;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.redisson.api.RedissonClient;

/**
 * What an HTTP agent's failed call costs, through the real runner, Redis, Postgres and the scripted model server: once
 * the request went out, a failure without usage is charged at its hold (the provider may have billed it); a call that
 * never left or was refused before processing costs nothing.
 */
class HttpAgentBudgetTest {
    private static final String PROMPT = "summarise the design";
    private static final int MAX_TOKENS = 256;

    @TempDir
    Path dir;

    private final RedisFixture redis = new RedisFixture();
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();
    private RedissonClient redisson;
    private StatefulRedisConnection<String, String> blocking;
    private FleetRateLimiter limiter;
    private JobQueue queue;

    @BeforeEach
    void setUp() {
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

    /** The hold of a call: the prompt as counted, the chat format's tokens, and max_tokens. */
    private static long hold(AgentConfig agent) {
        return TokenCounter.count(agent.encoding(), PROMPT) + JobRunner.CHAT_FORMAT_TOKENS + MAX_TOKENS;
    }

    @Test
    void aConnectionDroppedAfterTheRequestArrivedIsChargedAtItsHold() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.dropConnection());
            AgentConfig agent = httpAgent("gpt", AgentType.OPENAI_COMPATIBLE, server.openAiBaseUrl());
            TaskRecord task = run(agent, 30);
            assertThat(server.requests()).as("the provider read the whole request").hasSize(1);
            assertChargedAtHold(agent, task);
            assertThat(store.errors(task.id())).anySatisfy(error -> {
                assertThat(error.errorType()).isEqualTo("AgentError");
                assertThat(error.errorMessage()).contains("after the request was sent");
            });
        }
    }

    @Test
    void aServerErrorAfterTheRequestArrivedIsChargedAtItsHold() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.failed(502));
            AgentConfig agent = httpAgent("claude-api", AgentType.ANTHROPIC, server.anthropicBaseUrl());
            TaskRecord task = run(agent, 30);
            assertThat(server.requests()).singleElement().satisfies(r -> assertThat(r.answeredStatus()).isEqualTo(502));
            assertChargedAtHold(agent, task);
        }
    }

    @Test
    void anAnswerThatDoesNotComeWithinTheTimeoutIsChargedAtItsHold() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.ok("too late", 40, 9).after(Duration.ofSeconds(3)));
            AgentConfig agent = httpAgent("gpt", AgentType.OPENAI_COMPATIBLE, server.openAiBaseUrl());
            TaskRecord task = run(agent, 1);
            assertChargedAtHold(agent, task);
            assertThat(store.errors(task.id())).anySatisfy(error -> assertThat(error.errorType()).isEqualTo("TimeoutError"));
        }
    }

    @Test
    void aCallThatNeverLeftOrWasRejectedCostsNothing() throws Exception {
        int closedPort;
        try (ServerSocket socket = new ServerSocket(0)) {
            closedPort = socket.getLocalPort();
        }
        // A base URL with credentials in it (a gateway's basic auth): the error row names it masked.
        AgentConfig unreachable = httpAgent("gpt", AgentType.OPENAI_COMPATIBLE,
                "http://gateway:s3cret-pw@127.0.0.1:" + closedPort + "/v1");
        TaskRecord never = run(unreachable, 30);
        assertChargedNothing(never);
        assertThat(store.errors(never.id())).isNotEmpty().allSatisfy(error -> {
            assertThat(error.errorMessage()).contains("http://***@127.0.0.1:" + closedPort).doesNotContain("s3cret");
            assertThat(String.valueOf(error.detailsJson())).doesNotContain("s3cret");
        });

        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.failed(400));
            AgentConfig agent = httpAgent("gpt", AgentType.OPENAI_COMPATIBLE, server.openAiBaseUrl());
            TaskRecord task = run(agent, 30);
            assertThat(server.requests()).hasSize(1);
            assertChargedNothing(task);
        }
    }

    private void assertChargedAtHold(AgentConfig agent, TaskRecord task) {
        PoolState pool = ledger().taskPool("acme", task.id().toString(), 50_000, 0);
        assertThat(pool.used()).as("charged at the hold: prompt + chat format + max_tokens").isEqualTo(hold(agent));
        assertThat(pool.reserved()).isZero();
        assertThat(ledger().tenantPools("acme").getFirst().used()).isEqualTo(hold(agent));
        assertThat(store.results(task.id())).singleElement().satisfies(result -> {
            assertThat(result.status()).isEqualTo(JobStatus.FAILED);
            assertThat(result.usageSource()).isEqualTo("estimate");
            assertThat(result.tokensIn() + result.tokensOut()).isEqualTo(hold(agent));
            assertThat(result.tokensOut()).isEqualTo(MAX_TOKENS);
            assertThat(result.cost()).isPositive();
        });
    }

    private void assertChargedNothing(TaskRecord task) {
        PoolState pool = ledger().taskPool("acme", task.id().toString(), 50_000, 0);
        assertThat(pool.used()).isZero();
        assertThat(pool.reserved()).isZero();
        assertThat(store.results(task.id())).singleElement().extracting(ResultRecord::status, ResultRecord::tokensIn)
                .containsExactly(JobStatus.FAILED, 0L);
    }

    private BudgetLedger ledger() {
        return new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8, PeriodLimits.NONE, Clock.systemUTC());
    }

    private static AgentConfig httpAgent(String name, AgentType type, String baseUrl) {
        return new AgentConfig(name, type, List.of(), OutputFormat.TEXT, List.of(), "scripted-model", "o200k_base", 1_000,
                dev.kage.tokens.Prices.of(3.0, 15.0), Path.of("/"), new RetryPolicy(1, Set.of(), false), AgentLimits.defaults(name),
                new AgentConfig.HttpEndpoint(baseUrl, null, MAX_TOKENS), PeriodLimits.NONE);
    }

    /** Submits a task for {@code agent}, claims its job and runs it once (one attempt: no retry). */
    private TaskRecord run(AgentConfig agent, int timeoutSeconds) throws Exception {
        TaskRecord task = new TaskRecord(UUID.randomUUID(), "acme", PROMPT, TaskStatus.QUEUED, Priority.NORMAL, null, "main",
                List.of(new Assignment(agent.name(), timeoutSeconds)), null, 50_000, Instant.now(), Instant.now(), null);
        store.insert(task);
        queue.ensureStreams(agent.name());
        queue.enqueue(new JobMessage(JobMessage.jobId(task.id().toString(), agent.name()), task.id().toString(), "acme",
                agent.name(), Priority.NORMAL, PROMPT, "", "main", timeoutSeconds, 50_000, 1, 0));
        List<ClaimedJob> claimed = queue.read(blocking.sync(), agent.name(), "test-worker", Duration.ofSeconds(1));
        assertThat(claimed).hasSize(1);
        runner(agent).run(claimed.getFirst(), new JobControl());
        return task;
    }

    private JobRunner runner(AgentConfig agent) {
        KageSettings settings = KageSettings.load(Env.of(TestServices.environment(redis.namespace(), db.schema())));
        AgentCatalog catalog = new AgentCatalog(List.of(agent));
        WorkerSettings worker = new WorkerSettings("test-worker", dir.resolve("work"), dir.toString(), List.of(agent.name()),
                false, Duration.ofSeconds(5), 0);
        catalog.limitGroups(settings.rateLimit()).forEach(limiter::configure);
        KageKeys keys = redis.keys();
        return new JobRunner(settings, worker, catalog, queue, store, new LiveTaskState(keys, redis.redis()),
                new EventLog(keys, redis.redis(), Clock.systemUTC()), ledger(), limiter, new WorktreeManager(worker.workDir()),
                new ProcessRunner(), new OutcomeRecorder(store, keys, redis.redis()), redis.pipeline(), Clock.systemUTC(),
                new dev.kage.worker.metrics.WorkerMetrics(new SimpleMeterRegistry()));
    }
}
