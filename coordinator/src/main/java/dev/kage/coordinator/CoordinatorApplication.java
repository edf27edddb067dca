package dev.kage.coordinator;

import dev.kage.agent.AgentCatalog;
import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.auth.ApiKeyStore;
import dev.kage.coordinator.auth.ApiKeys;
import dev.kage.coordinator.auth.KeyAuthenticator;
import dev.kage.coordinator.auth.KeysCommand;
import dev.kage.store.Database;
import dev.kage.store.StoreException;
import io.micronaut.runtime.Micronaut;
import java.nio.file.Path;
import java.util.Arrays;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The coordinator process: the HTTP API on {@code PORT} (default 8003). Configuration is checked
 * before anything starts; a bad value ends the process with status 2 and one line naming the variable.
 * With first argument {@code keys} it manages API keys instead ({@link KeysCommand}) and exits.
 */
public final class CoordinatorApplication {
    private CoordinatorApplication() {
    }

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("keys")) {
            if (System.getProperty("KAGE_LOG_LEVEL") == null && System.getenv("KAGE_LOG_LEVEL") == null) {
                System.setProperty("KAGE_LOG_LEVEL", "WARN"); // before the first logger: keep standard output for the key
            }
            System.exit(new KeysCommand(Env.system(), System.out, System.err).run(Arrays.copyOfRange(args, 1, args.length)));
        }
        Logger log = LoggerFactory.getLogger(CoordinatorApplication.class);
        try {
            Env env = Env.system();
            KageSettings settings = KageSettings.load(env);
            ApiKeys keys = ApiKeys.load(env);
            KeyAuthenticator.cacheTtl(env);
            AgentCatalog.load(Path.of(env.get(AgentCatalog.VARIABLE).orElseThrow(() -> new ConfigException(
                    AgentCatalog.VARIABLE + " is not set: point it at the agents file, e.g. ops/agents/agents.yml"))));
            if (keys.isEmpty()) {
                requireDatabaseKey(settings);
            }
        } catch (ConfigException e) {
            log.error("Coordinator cannot start: {}", e.getMessage());
            System.exit(2);
        } catch (StoreException e) {
            log.error("Coordinator cannot start: no key in KAGE_API_KEYS and the database cannot be asked for one: {}",
                    e.getMessage());
            System.exit(1);
        }
        Micronaut.run(CoordinatorApplication.class, args);
    }

    /** Without environment keys, only database keys can be accepted: one must be active. */
    private static void requireDatabaseKey(KageSettings settings) {
        try (Database database = Database.open(settings.database(), settings.dbSchema(), "kage-startup", 2)) {
            if (new ApiKeyStore(database).activeCount() == 0) {
                throw new ConfigException(ApiKeys.NO_KEYS);
            }
        }
    }
}
