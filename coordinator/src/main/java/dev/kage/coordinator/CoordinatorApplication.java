package dev.kage.coordinator;

import io.swagger.v3.oas.annotations.OpenAPIDefinition;
import io.swagger.v3.oas.annotations.enums.SecuritySchemeIn;
import io.swagger.v3.oas.annotations.enums.SecuritySchemeType;
import io.swagger.v3.oas.annotations.info.Info;
import io.swagger.v3.oas.annotations.security.SecurityRequirement;
import io.swagger.v3.oas.annotations.security.SecurityScheme;
import io.swagger.v3.oas.annotations.tags.Tag;
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
@OpenAPIDefinition(
        info = @Info(title = "Kage Bunshin coordinator API", version = "v1",
                description = "Queue AI coding agents as tasks, follow them, and run the fleet. Every route under `/api` needs "
                        + "an `X-API-Key` header with the scope the route names (`submit`, `read` or `admin`); a key belongs to "
                        + "one tenant, which sees only its own tasks. Errors are JSON: `{\"error\": code, \"message\": "
                        + "sentence, \"errors\": [{\"field\", \"message\"}]}`, one entry per bad field."),
        security = @SecurityRequirement(name = "apiKey"),
        tags = {
                @Tag(name = "tasks", description = "Submit tasks (one or a batch), read and list them, follow their events, cancel"),
                @Tag(name = "dead letters", description = "Jobs that ran out of attempts, and their replay"),
                @Tag(name = "budgets", description = "Token and USD budgets per tenant and period"),
                @Tag(name = "limits", description = "The fleet's rate limits per agent or limit group"),
                @Tag(name = "fleet", description = "Queues and live workers, fleet-wide"),
                @Tag(name = "reports", description = "The success metrics for the caller's tenant"),
                @Tag(name = "keys", description = "API keys of every tenant, for platform operators")})
@SecurityScheme(name = "apiKey", type = SecuritySchemeType.APIKEY, in = SecuritySchemeIn.HEADER, paramName = "X-API-Key",
        description = "A key from `POST /api/v1/keys` or `KAGE_API_KEYS` (`dev-key-12345` in dev mode)")
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
            dev.kage.coordinator.task.RepoPolicy.load(env);
            dev.kage.coordinator.events.EventHub.maxStreamsPerTenant(env);
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
        try (Database database = Database.open(settings.database(), settings.dbSchema(), "kage-startup", 2,
                settings.dbSocketTimeoutSeconds())) {
            if (new ApiKeyStore(database).activeCount() == 0) {
                throw new ConfigException(ApiKeys.NO_KEYS);
            }
        }
    }
}
