package dev.kage.coordinator;

import dev.kage.config.ConfigException;
import io.micronaut.runtime.Micronaut;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The coordinator process: the HTTP API on {@code PORT} (default 8003). Exits with status 2 on bad configuration. */
public final class CoordinatorApplication {
    private static final Logger LOG = LoggerFactory.getLogger(CoordinatorApplication.class);

    private CoordinatorApplication() {
    }

    public static void main(String[] args) {
        try {
            Micronaut.run(CoordinatorApplication.class, args);
        } catch (RuntimeException e) {
            Throwable cause = e;
            while (cause.getCause() != null && cause.getCause() != cause) {
                cause = cause.getCause();
            }
            if (cause instanceof ConfigException) {
                LOG.error("Coordinator cannot start: {}", cause.getMessage());
                System.exit(2);
            }
            throw e;
        }
    }
}
