package dev.kage.worker.metrics;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;

/**
 * Where a worker serves its metrics. Immutable.
 *
 * @param port {@code KAGE_WORKER_METRICS_PORT}: 1-65535, or 0 (the default) for no metrics endpoint. Off by default
 *             because several workers often share a machine (quickstart, the e2e fleet): a fixed default port would
 *             let only the first one start. A container gets one worker, so {@code docker-compose.yml} sets 9464.
 */
public record WorkerMetricsSettings(int port) {
    public static final String VARIABLE = "KAGE_WORKER_METRICS_PORT";
    public static final WorkerMetricsSettings NONE = new WorkerMetricsSettings(0);

    /** @throws ConfigException naming the variable when it is not a port number */
    public static WorkerMetricsSettings load(Env env) {
        String raw = env.get(VARIABLE).map(String::trim).orElse("");
        if (raw.isEmpty()) {
            return NONE;
        }
        int port;
        try {
            port = Integer.parseInt(raw);
        } catch (NumberFormatException e) {
            port = -1;
        }
        if (port < 0 || port > 65_535) {
            throw new ConfigException(VARIABLE + "=" + raw + ": must be a port number from 1 to 65535, or 0 for no metrics "
                    + "endpoint (default 0)");
        }
        return new WorkerMetricsSettings(port);
    }

    public boolean enabled() {
        return port != 0;
    }
}
