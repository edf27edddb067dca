package dev.kage.coordinator;

import dev.kage.agent.AgentCatalog;
import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.auth.ApiKeys;
import io.micronaut.runtime.Micronaut;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The coordinator process: the HTTP API on {@code PORT} (default 8003). Configuration is checked
 * before anything starts; a bad value ends the process with status 2 and one line naming the variable.
 */
public final class CoordinatorApplication {
    private static final Logger LOG = LoggerFactory.getLogger(CoordinatorApplication.class);

    private CoordinatorApplication() {
    }

    public static void main(String[] args) {
        try {
            Env env = Env.system();
            KageSettings.load(env);
            ApiKeys.load(env);
            AgentCatalog.load(Path.of(env.get(AgentCatalog.VARIABLE).orElseThrow(() -> new ConfigException(
                    AgentCatalog.VARIABLE + " is not set: point it at the agents file, e.g. ops/agents/agents.yml"))));
        } catch (ConfigException e) {
            LOG.error("Coordinator cannot start: {}", e.getMessage());
            System.exit(2);
        }
        Micronaut.run(CoordinatorApplication.class, args);
    }
}
