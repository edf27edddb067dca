package dev.kage.worker;

import dev.kage.config.ConfigException;
import dev.kage.worker.run.WorkerRuntime;
import io.micronaut.context.ApplicationContext;
import io.micronaut.context.exceptions.BeanInstantiationException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The worker process: no public API, only claim loops and a heartbeat. Exits with status 2 and a
 * message naming the variable when configuration is bad.
 */
public final class WorkerApplication {
    private static final Logger LOG = LoggerFactory.getLogger(WorkerApplication.class);

    private WorkerApplication() {
    }

    public static void main(String[] args) {
        ApplicationContext context;
        try {
            context = ApplicationContext.builder(WorkerApplication.class).args(args).start();
            context.getBean(WorkerRuntime.class).start();
        } catch (BeanInstantiationException e) {
            Throwable cause = rootCause(e);
            if (cause instanceof ConfigException) {
                LOG.error("Worker cannot start: {}", cause.getMessage());
                System.exit(2);
            }
            throw e;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(context::close, "kage-shutdown"));
    }

    static Throwable rootCause(Throwable e) {
        Throwable cause = e;
        while (cause.getCause() != null && cause.getCause() != cause) {
            cause = cause.getCause();
        }
        return cause;
    }
}
