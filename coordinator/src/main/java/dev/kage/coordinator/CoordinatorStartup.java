package dev.kage.coordinator;

import dev.kage.agent.AgentCatalog;
import dev.kage.config.KageSettings;
import dev.kage.config.ConfigException;
import dev.kage.coordinator.auth.ApiKeyStore;
import dev.kage.coordinator.auth.ApiKeys;
import dev.kage.coordinator.auth.KeyAuthenticator;
import dev.kage.queue.JobQueue;
import dev.kage.store.Database;
import io.micronaut.context.annotation.Context;
import jakarta.annotation.PostConstruct;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Built eagerly at start-up so bad configuration, an unreachable database or Redis fails the start
 * instead of the first request: validates settings and keys (refusing to start when no key could be accepted:
 * none in {@code KAGE_API_KEYS}, no dev mode, no active key in the database), migrates the schema, creates the agents'
 * streams and consumer groups.
 */
@Context
public class CoordinatorStartup {
    private static final Logger LOG = LoggerFactory.getLogger(CoordinatorStartup.class);

    private final KageSettings settings;
    private final AgentCatalog catalog;
    private final ApiKeys keys;
    private final ApiKeyStore keyStore;
    private final KeyAuthenticator authenticator;
    private final JobQueue queue;
    private final Database database;
    private final io.lettuce.core.api.sync.RedisCommands<String, String> redis;

    public CoordinatorStartup(KageSettings settings, AgentCatalog catalog, ApiKeys keys, ApiKeyStore keyStore,
                              KeyAuthenticator authenticator, JobQueue queue, Database database,
                              io.lettuce.core.api.sync.RedisCommands<String, String> redis) {
        this.redis = redis;
        this.settings = settings;
        this.catalog = catalog;
        this.keys = keys;
        this.keyStore = keyStore;
        this.authenticator = authenticator;
        this.queue = queue;
        this.database = database;
    }

    @PostConstruct
    void start() {
        long databaseKeys = keyStore.activeCount();
        if (keys.isEmpty() && databaseKeys == 0) {
            throw new ConfigException(ApiKeys.NO_KEYS);
        }
        for (String agent : catalog.names()) {
            queue.ensureStreams(agent);
        }
        dev.kage.redis.EvictionCheck.warning(redis).ifPresent(LOG::warn);
        if (keys.devMode()) {
            LOG.warn("KAGE_DEV_MODE=true: the development API key is accepted. Never run a shared fleet like this.");
        }
        LOG.info("API keys: {} active in the database (cached {} ms, the bound on a revocation), {} from the environment",
                databaseKeys, authenticator.cacheTtl().toMillis(), keys.isEmpty() ? "none" : "some");
        LOG.info("Coordinator ready: agents {}, namespace '{}', schema '{}', BUDGET_MODE={}", catalog.names(),
                settings.namespace(), database.schema(), settings.budgetMode().name().toLowerCase());
    }
}
