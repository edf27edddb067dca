package dev.kage.worker;

import dev.kage.agent.AgentCatalog;
import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.worker.metrics.MetricsServer;
import dev.kage.worker.metrics.WorkerMetricsSettings;
import dev.kage.worker.run.WorkerRuntime;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.micronaut.context.ApplicationContext;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The worker process: no public API, only claim loops and a heartbeat. Configuration is checked
 * before anything starts; a bad value ends the process with status 2 and one line naming the variable.
 * SIGTERM stops claiming and lets running jobs finish within {@code KAGE_SHUTDOWN_GRACE_SECONDS}. With
 * {@code KAGE_WORKER_METRICS_PORT} set, {@code GET /prometheus} on that port serves the worker's metrics.
 */
public final class WorkerApplication {
    private static final Logger LOG = LoggerFactory.getLogger(WorkerApplication.class);

    private WorkerApplication() {
    }

    /**
     * Everything the worker reads from its environment, checked before anything connects or starts.
     *
     * @throws ConfigException naming the variable
     */
    static void checkConfiguration(Env env) {
        KageSettings settings = KageSettings.load(env);
        AgentCatalog catalog = AgentCatalog.load(Path.of(env.get(AgentCatalog.VARIABLE).orElseThrow(() -> new ConfigException(
                AgentCatalog.VARIABLE + " is not set: point it at the agents file, e.g. ops/agents/agents.yml"))));
        WorkerFactory.checkExecutables(WorkerSettings.load(env, catalog), catalog);
        WorkerSettings.startLanes(env, settings.maxParallelClis());
        dev.kage.infra.KageFactory.clockOffsetMillis(env);
        WorkerMetricsSettings.load(env);
    }

    public static void main(String[] args) {
        try {
            checkConfiguration(Env.system());
        } catch (ConfigException e) {
            LOG.error("Worker cannot start: {}", e.getMessage());
            System.exit(2);
        }
        ApplicationContext context;
        try {
            context = ApplicationContext.builder(WorkerApplication.class).args(args).start();
            context.getBean(WorkerRuntime.class);
        } catch (Throwable e) {
            // Whatever failed after the check (Redis or Postgres away at start, say): one line and an exit, not a process
            // left alive by the clients' threads that claims nothing. The stack trace only at DEBUG.
            boolean config = false;
            String reason = String.valueOf(e.getMessage());
            for (Throwable cause = e; cause != null; cause = cause.getCause()) {
                if (cause instanceof ConfigException) {
                    config = true;
                    reason = cause.getMessage();
                }
            }
            LOG.error("Worker cannot start: {}", reason);
            LOG.debug("Worker start failure", e);
            System.exit(config ? 2 : 1);
            return;
        }
        WorkerMetricsSettings metrics = context.getBean(WorkerMetricsSettings.class);
        if (metrics.enabled()) {
            MetricsServer server = new MetricsServer(context.getBean(PrometheusMeterRegistry.class), metrics.port());
            try {
                server.start();
            } catch (ConfigException e) {
                LOG.error("Worker cannot start: {}", e.getMessage());
                context.close();
                System.exit(2);
            }
            LOG.info("Metrics at http://0.0.0.0:{}{}", server.port(), MetricsServer.PATH);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(context::close, "kage-shutdown"));
        try {
            context.getBean(WorkerRuntime.class).start();
        } catch (RuntimeException e) {
            // Never a process kept alive by the clients' threads with this thread gone: the exit runs the hook above.
            LOG.error("Worker cannot start: {}", e.toString());
            System.exit(1);
        }
    }
}
