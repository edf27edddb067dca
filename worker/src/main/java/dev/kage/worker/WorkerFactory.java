package dev.kage.worker;

import dev.kage.agent.AgentCatalog;
import java.util.Optional;
import dev.kage.agent.AgentType;
import dev.kage.budget.BudgetLedger;
import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.ratelimit.Limit;
import org.redisson.client.RedisException;
import org.slf4j.LoggerFactory;
import dev.kage.infra.KageFactory;
import dev.kage.redis.KageKeys;
import dev.kage.redis.RedisPipeline;
import jakarta.inject.Named;
import dev.kage.store.TaskStore;
import dev.kage.task.LiveTaskState;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.run.JobRunner;
import dev.kage.worker.run.OutcomeRecorder;
import dev.kage.worker.run.WorkerRuntime;
import dev.kage.worker.metrics.WorkerMetrics;
import dev.kage.worker.metrics.WorkerMetricsSettings;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import dev.kage.worker.worktree.WorktreeManager;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.context.annotation.Bean;
import io.micronaut.context.annotation.Factory;
import jakarta.inject.Singleton;
import java.time.Clock;

/** Builds the worker's parts from the shared clients. */
@Factory
public class WorkerFactory {
    /** The folder of the work dir recording the running agents' process groups. */
    static final String AGENT_GROUPS = "agent-groups";

    @Singleton
    public WorkerSettings workerSettings(Env env, AgentCatalog catalog) {
        WorkerSettings settings = WorkerSettings.load(env, catalog);
        checkExecutables(settings, catalog);
        return settings;
    }

    /**
     * @throws ConfigException naming the agent when the program of an agent this worker serves is missing (a noop agent has none)
     */
    static void checkExecutables(WorkerSettings settings, AgentCatalog catalog) {
        String path = System.getenv("PATH");
        for (String name : settings.agents()) {
            var agent = catalog.require(name);
            if (agent.type() != AgentType.COMMAND) {
                checkApiKey(name, agent, System::getenv);
                continue;
            }
            if (agent.locateExecutable(path).isEmpty()) {
                throw new ConfigException(AgentCatalog.VARIABLE + ": agent '" + name + "': program '" + agent.argv().getFirst()
                        + "' (" + agent.executable() + ") is not installed or not executable");
            }
        }
    }

    /**
     * An HTTP agent that names an {@code api_key_env} needs it set, to a value an HTTP header can carry: unset, every
     * job of the agent failed with a 401; with a line break inside, every job failed and the JDK's error, with the key in
     * it, was logged.
     */
    static void checkApiKey(String name, dev.kage.agent.AgentConfig agent, java.util.function.UnaryOperator<String> env) {
        if (agent.endpoint() == null || agent.endpoint().apiKeyEnv() == null) {
            return;
        }
        Optional<String> key;
        try {
            key = dev.kage.worker.agent.HttpAgentClient.apiKey(agent.endpoint(), env);
        } catch (ConfigException e) {
            throw new ConfigException(AgentCatalog.VARIABLE + ": agent '" + name + "': " + e.getMessage());
        }
        if (key.isEmpty()) {
            throw new ConfigException(AgentCatalog.VARIABLE + ": agent '" + name + "': its api_key_env "
                    + agent.endpoint().apiKeyEnv() + " is not set (or blank); set it, or remove api_key_env for an endpoint "
                    + "that takes no key");
        }
    }

    /**
     * The worker's one meter registry: every meter of the process (the runner's, the runtime's, the rate limiter's
     * through {@code KageFactory}) is registered on it, and {@code MetricsServer} serves it.
     */
    @Singleton
    @Bean(preDestroy = "close")
    public PrometheusMeterRegistry meterRegistry() {
        return new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    }

    @Singleton
    public WorkerMetrics workerMetrics(PrometheusMeterRegistry registry) {
        return new WorkerMetrics(registry);
    }

    @Singleton
    public WorkerMetricsSettings workerMetricsSettings(Env env) {
        return WorkerMetricsSettings.load(env);
    }

    @Singleton
    public LiveTaskState liveTaskState(KageKeys keys, RedisCommands<String, String> redis) {
        return new LiveTaskState(keys, redis);
    }

    @Singleton
    public OutcomeRecorder outcomeRecorder(TaskStore store, KageKeys keys, RedisCommands<String, String> redis,
                                           LiveTaskState live, EventLog events) {
        OutcomeRecorder outcomes = new OutcomeRecorder(store, keys, redis);
        outcomes.announceLateRecords(live, events);
        return outcomes;
    }

    /** The jobs' start and finish bookkeeping, sent in shared flushes on a connection of its own. */
    @Singleton
    @Named("jobs")
    @Bean(preDestroy = "close")
    public RedisPipeline jobPipeline(RedisClient client) {
        return new RedisPipeline(client, "jobs", KageFactory.REDIS_COMMAND_TIMEOUT);
    }

    @Singleton
    public JobRunner jobRunner(KageSettings settings, WorkerSettings worker, AgentCatalog catalog, JobQueue queue,
                               TaskStore store, LiveTaskState live, EventLog events, BudgetLedger budget,
                               FleetRateLimiter rateLimiter, OutcomeRecorder outcomes, WorktreeManager worktrees,
                               ProcessRunner processes, @Named("jobs") RedisPipeline pipeline, Clock clock,
                               WorkerMetrics metrics) {
        configureLimits(settings, worker, catalog, rateLimiter);
        return new JobRunner(settings, worker, catalog, queue, store, live, events, budget, rateLimiter, worktrees,
                processes, outcomes, pipeline, clock, metrics);
    }

    /**
     * This worker's hold on its work dir, taken before anything uses the dir: a second worker with the same id on this
     * host stops at start-up ({@code KAGE_WORKER_ID}); then what this host's workers with default ids left when they
     * were killed without a shutdown is cleared. Released when the worker stops.
     */
    @Singleton
    @Bean(preDestroy = "close")
    public WorkDirLock workDirLock(WorkerSettings worker) {
        String prefix = WorkerSettings.defaultIdPrefix();
        boolean defaultId = worker.workerId().equals(prefix + ProcessHandle.current().pid());
        WorkDirLock lock = WorkDirLock.acquire(worker.workDir(), worker.workerId(), defaultId, WorkDirLock.PREDECESSOR_EXIT);
        // Off the start-up path: killing what a dead worker left takes up to 5 s a group that ignores SIGTERM.
        Thread.ofVirtual().name("kage-work-dir-sweep").start(() -> lock.sweepPredecessors(prefix));
        return lock;
    }

    /**
     * Runs the agents, recording their process groups in the work dir ({@code agent-groups/}); first kills the groups
     * an earlier incarnation of this worker (same work dir) left running when it was killed without a shutdown.
     */
    @Singleton
    public ProcessRunner processRunner(WorkerSettings worker, WorkDirLock workDir) {
        ProcessRunner processes = new ProcessRunner(worker.workDir().resolve(AGENT_GROUPS));
        processes.killLeftoverGroups();
        return processes;
    }

    /**
     * This worker's clones and worktrees; what a crashed predecessor left is cleared first, its default repository is
     * prepared in the background (clone, ready worktrees), ready ones are removed on shutdown.
     */
    @Singleton
    @Bean(preDestroy = "close")
    public WorktreeManager worktreeManager(KageSettings settings, WorkerSettings worker, ProcessRunner processes) {
        // (processes: its leftover agents are killed before the worktrees they could still write into are cleared.)
        WorktreeManager worktrees = new WorktreeManager(worker.workDir(), settings.maxActiveWorktrees(),
                worker.worktreePool(settings.maxParallelClis()));
        worktrees.recoverAfterCrash();
        if (!worker.defaultRepo().isBlank()) {
            worktrees.prepare(worker.defaultRepo(), settings.baseBranch());
        } else {
            LoggerFactory.getLogger(WorkerFactory.class).warn("KAGE_DEFAULT_REPO is not set: a task without repo fails on this "
                    + "worker (WorktreeError); HTTP agents need none");
        }
        return worktrees;
    }

    /**
     * Sets up the limit group of every agent this worker serves, for the whole fleet (an operator's runtime
     * change stays in force). With Redis down the limits are still known here, and the first permit asked
     * for sets them up.
     */
    static void configureLimits(KageSettings settings, WorkerSettings worker, AgentCatalog catalog, FleetRateLimiter rateLimiter) {
        var groups = catalog.limitGroups(settings.rateLimit());
        for (String agent : worker.agents()) {
            String group = catalog.require(agent).limits().group();
            Limit limit = groups.get(group);
            try {
                rateLimiter.configure(group, limit);
            } catch (RedisException e) {
                LoggerFactory.getLogger(WorkerFactory.class).warn("Rate limit group {} not stored yet (Redis: {}); "
                        + "the first permit asked for sets it up", group, e.getMessage());
            }
        }
    }

    @Singleton
    @Bean(preDestroy = "stop")
    public WorkerRuntime workerRuntime(KageSettings settings, WorkerSettings worker, AgentCatalog catalog, Env env,
                                       KageKeys keys, RedisClient redisClient,
                                       RedisCommands<String, String> redis, JobQueue queue, JobRunner runner,
                                       LiveTaskState live, OutcomeRecorder outcomes, Clock clock, WorkerMetrics metrics) {
        java.util.Set<String> laned = new java.util.HashSet<>();
        for (String agent : worker.agents()) {
            AgentType type = catalog.require(agent).type();
            if (type != AgentType.NOOP && !type.isHttp()) {
                laned.add(agent);
            }
        }
        return new WorkerRuntime(worker, settings.queue(), settings.maxParallelClis(), keys, redisClient, redis, queue, runner,
                live, outcomes, clock, metrics, WorkerSettings.startLanes(env, settings.maxParallelClis()), laned);
    }
}
