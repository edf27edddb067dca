package dev.kage.infra;

import dev.kage.agent.AgentCatalog;
import dev.kage.budget.BudgetLedger;
import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.ratelimit.FleetRateLimiter;
import io.micrometer.core.instrument.MeterRegistry;
import dev.kage.redis.KageKeys;
import dev.kage.redis.Utf8Codec;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;
import io.lettuce.core.ClientOptions;
import io.lettuce.core.metrics.CommandLatencyRecorder;
import io.lettuce.core.resource.ClientResources;
import io.lettuce.core.resource.DefaultClientResources;
import io.lettuce.core.resource.Delay;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.TimeoutOptions;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.context.annotation.Bean;
import io.micronaut.context.annotation.Factory;
import io.micronaut.context.env.Environment;
import jakarta.inject.Named;
import jakarta.inject.Singleton;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import org.redisson.api.RedissonClient;

/**
 * Builds the clients both applications share (Lettuce, Redisson, Jdbi) and the services on top of
 * them, each once, with shutdown on context close.
 *
 * <p>Settings are read by their environment-variable names ({@code MAX_TOKENS_PER_TASK}); Micronaut
 * also exposes each variable as a dotted property ({@code max.tokens.per.task}), which is what tests
 * set.
 */
@Factory
public class KageFactory {

    /** Command timeout of the shared connection; blocking reads use their own connections. */
    public static final Duration REDIS_COMMAND_TIMEOUT = Duration.ofSeconds(10);
    /** The longest wait between two reconnect attempts to Redis (exponential from 1 ms up to this). */
    public static final Duration REDIS_RECONNECT_AT_MOST = Duration.ofSeconds(1);

    @Singleton
    public Env env(Environment environment) {
        return new Env(name -> environment.getProperty(name.toLowerCase(Locale.ROOT).replace('_', '.'), String.class));
    }

    @Singleton
    public KageSettings settings(Env env) {
        return KageSettings.load(env);
    }

    @Singleton
    public AgentCatalog agentCatalog(Env env) {
        String file = env.get(AgentCatalog.VARIABLE).orElseThrow(() -> new ConfigException(AgentCatalog.VARIABLE
                + " is not set: point it at the agents file, e.g. ops/agents/agents.yml"));
        return AgentCatalog.load(Path.of(file));
    }

    /**
     * The process's clock. {@code KAGE_CLOCK_OFFSET_MS} skews it, for fault-injection tests only: nothing that
     * decides across processes (rate limits, due times, reclaim, budget periods) reads a process's clock. RateLimitIT
     * proves it for rate limits with one worker skewed, RedisClockTest for budget periods (which read the process's
     * clock only until Redis first answers).
     */
    @Singleton
    public Clock clock(Env env) {
        long offset = clockOffsetMillis(env);
        if (offset != 0) {
            org.slf4j.LoggerFactory.getLogger(KageFactory.class).warn("KAGE_CLOCK_OFFSET_MS={}: this process's clock is skewed on purpose", offset);
            return Clock.offset(Clock.systemUTC(), Duration.ofMillis(offset));
        }
        return Clock.systemUTC();
    }

    /**
     * {@code KAGE_CLOCK_OFFSET_MS}, checked: a whole number of milliseconds within a year either way.
     *
     * @throws ConfigException naming the variable
     */
    public static long clockOffsetMillis(Env env) {
        return env.get("KAGE_CLOCK_OFFSET_MS").map(raw -> {
            long offset;
            try {
                offset = Long.parseLong(raw.trim());
            } catch (NumberFormatException e) {
                offset = Long.MAX_VALUE;
            }
            if (Math.abs(offset) > Duration.ofDays(366).toMillis()) {
                throw new ConfigException("KAGE_CLOCK_OFFSET_MS=" + raw + ": must be a whole number of milliseconds, at most a "
                        + "year either way (tests only)");
            }
            return offset;
        }).orElse(0L);
    }

    @Singleton
    public KageKeys keys(KageSettings settings) {
        return new KageKeys(settings.namespace());
    }

    /**
     * Lettuce's event loops and timers, without its per-command latency histograms (on by default when HdrHistogram is
     * on the class path: an HdrHistogram update per command reply, ~2% of a worker's CPU in the queue bench's profile,
     * read by nothing here), and reconnecting at least every {@link #REDIS_RECONNECT_AT_MOST} after an outage. Lettuce's
     * default backs off to 30 s: a worker would then beat again up to 30 s after Redis returned, while the coordinator's
     * reconciler waits {@code JobQueue.LOST_ENTRY_GRACE} (25 s) for those beats before enqueuing jobs Redis lost.
     */
    @Singleton
    @Bean(preDestroy = "shutdown")
    public ClientResources redisResources() {
        return DefaultClientResources.builder().commandLatencyRecorder(CommandLatencyRecorder.disabled())
                .reconnectDelay(Delay.exponential(Duration.ZERO, REDIS_RECONNECT_AT_MOST, 2, TimeUnit.MILLISECONDS)).build();
    }

    @Singleton
    @Bean(preDestroy = "shutdown")
    public RedisClient redisClient(KageSettings settings, ClientResources resources) {
        RedisClient client = RedisClient.create(resources, settings.redisUrl());
        client.setOptions(ClientOptions.builder()
                .autoReconnect(true)
                .timeoutOptions(TimeoutOptions.enabled(REDIS_COMMAND_TIMEOUT))
                .build());
        return client;
    }

    @Singleton
    @Bean(preDestroy = "close")
    @Named("shared")
    public StatefulRedisConnection<String, String> sharedConnection(RedisClient client) {
        return client.connect(Utf8Codec.INSTANCE);
    }

    @Singleton
    public RedisCommands<String, String> redis(@Named("shared") StatefulRedisConnection<String, String> connection) {
        return connection.sync();
    }

    /** The limiter's Redis client: short timeouts, so an unreachable Redis is noticed in about two seconds. */
    @Singleton
    @Bean(preDestroy = "shutdown")
    public RedissonClient redisson(KageSettings settings) {
        return FleetRateLimiter.client(settings.redisUrl());
    }

    @Singleton
    @Bean(preDestroy = "close")
    public Database database(KageSettings settings) {
        return Database.open(settings.database(), settings.dbSchema(), "kage", 8, settings.dbSocketTimeoutSeconds());
    }

    @Singleton
    public TaskStore taskStore(Database database) {
        return new TaskStore(database);
    }

    @Singleton
    public JobQueue jobQueue(KageKeys keys, RedisCommands<String, String> redis) {
        return new JobQueue(keys, redis);
    }

    @Singleton
    public EventLog eventLog(KageKeys keys, RedisCommands<String, String> redis, Clock clock) {
        return new EventLog(keys, redis, clock);
    }

    @Singleton
    public BudgetLedger budgetLedger(KageKeys keys, RedisCommands<String, String> redis, KageSettings settings, Clock clock) {
        // Periods by the Redis clock: the day a hold is charged to is the fleet's, not this process's.
        return new BudgetLedger(keys, redis, settings.budgetMode(), settings.tokenWarningThreshold(),
                settings.budget().tenantDefaults(), new dev.kage.redis.RedisClock(redis, clock));
    }

    /**
     * @param registry the application's meter registry (the one it serves to Prometheus): each application defines
     *                 one, so the limiter's meters are scraped with the rest
     */
    @Singleton
    public FleetRateLimiter rateLimiter(KageKeys keys, RedissonClient redisson, KageSettings settings, MeterRegistry registry) {
        return new FleetRateLimiter(keys, redisson, settings.rateLimit().onRedisError(), registry);
    }
}
