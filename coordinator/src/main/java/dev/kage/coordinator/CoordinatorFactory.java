package dev.kage.coordinator;

import dev.kage.agent.AgentCatalog;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.auth.ApiKeyStore;
import dev.kage.coordinator.auth.ApiKeys;
import dev.kage.coordinator.auth.KeyAuthenticator;
import dev.kage.coordinator.events.EventHub;
import dev.kage.coordinator.task.SubmitRequestParser;
import dev.kage.coordinator.task.TaskListing;
import dev.kage.coordinator.task.TaskService;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.infra.KageFactory;
import dev.kage.redis.KageKeys;
import dev.kage.redis.RedisPipeline;
import dev.kage.store.Database;
import dev.kage.store.ReportQueries;
import dev.kage.store.TaskQueries;
import dev.kage.store.TaskStore;
import dev.kage.task.LiveTaskState;
import io.lettuce.core.RedisClient;
import io.micrometer.core.instrument.MeterRegistry;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.context.annotation.Bean;
import io.micronaut.context.annotation.Factory;
import jakarta.inject.Named;
import jakarta.inject.Singleton;
import java.time.Clock;

/** Builds the coordinator's services from the shared clients. */
@Factory
public class CoordinatorFactory {

    @Singleton
    public ApiKeys apiKeys(Env env) {
        return ApiKeys.load(env);
    }

    @Singleton
    public ApiKeyStore apiKeyStore(Database database) {
        return new ApiKeyStore(database);
    }

    @Singleton
    public KeyAuthenticator keyAuthenticator(ApiKeys keys, ApiKeyStore store, Clock clock, Env env) {
        return new KeyAuthenticator(keys, store, clock, KeyAuthenticator.cacheTtl(env));
    }

    @Singleton
    public dev.kage.coordinator.task.ServedAgents servedAgents(KageKeys keys, RedisCommands<String, String> redis) {
        return new dev.kage.coordinator.task.ServedAgents(keys, redis);
    }

    @Singleton
    public LiveTaskState liveTaskState(KageKeys keys, RedisCommands<String, String> redis) {
        return new LiveTaskState(keys, redis);
    }

    @Singleton
    public SubmitRequestParser submitRequestParser(AgentCatalog catalog, KageSettings settings) {
        return new SubmitRequestParser(catalog, settings);
    }

    /** Submits' Redis writes and budget reads, sent in shared flushes on a connection of its own. */
    @Singleton
    @Named("submit")
    @Bean(preDestroy = "close")
    public RedisPipeline submitPipeline(RedisClient client) {
        return new RedisPipeline(client, "submit", KageFactory.REDIS_COMMAND_TIMEOUT);
    }

    @Singleton
    public dev.kage.store.LimitOverrideStore limitOverrideStore(dev.kage.store.Database database) {
        return new dev.kage.store.LimitOverrideStore(database);
    }

    @Singleton
    public dev.kage.store.TenantBudgetLimitStore tenantBudgetLimitStore(dev.kage.store.Database database) {
        return new dev.kage.store.TenantBudgetLimitStore(database);
    }

    @Singleton
    public dev.kage.coordinator.task.RepoPolicy repoPolicy(Env env) {
        return dev.kage.coordinator.task.RepoPolicy.load(env);
    }

    /** Closed at shutdown: its batch relay finishes what it holds, then the last marks are written. */
    @Singleton
    @Bean(preDestroy = "close")
    public TaskService taskService(KageSettings settings, TaskStore store, JobQueue queue, LiveTaskState live,
                                   EventLog events, Clock clock, MeterRegistry registry, @Named("submit") RedisPipeline pipeline) {
        return new TaskService(settings, store, queue, live, events, clock, registry, pipeline);
    }

    @Singleton
    public TaskQueries taskQueries(Database database) {
        return new TaskQueries(database);
    }

    @Singleton
    public ReportQueries reportQueries(Database database) {
        return new ReportQueries(database);
    }

    @Singleton
    public TaskListing taskListing(TaskQueries queries, AgentCatalog catalog) {
        return new TaskListing(queries, catalog);
    }

    /** The one reader of {@code kage:events} behind every SSE stream, closed at shutdown. */
    @Singleton
    @Bean(preDestroy = "close")
    public EventHub eventHub(RedisClient client, KageSettings settings, KageKeys keys, Env env) {
        EventHub hub = new EventHub(client, settings.redisUrl(), keys, EventHub.maxStreamsPerTenant(env));
        hub.start();
        return hub;
    }
}
