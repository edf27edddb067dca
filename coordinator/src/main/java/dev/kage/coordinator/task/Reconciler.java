package dev.kage.coordinator.task;

import io.micronaut.scheduling.annotation.Scheduled;
import jakarta.inject.Singleton;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every few seconds, enqueues tasks whose jobs never reached Redis; every 100 ms (and at shutdown), writes the
 * enqueued marks of the tasks submitted since (see {@link TaskService}).
 */
@Singleton
public class Reconciler {
    private static final Logger LOG = LoggerFactory.getLogger(Reconciler.class);

    private final TaskService service;

    public Reconciler(TaskService service) {
        this.service = service;
    }

    @Scheduled(fixedDelay = "100ms", initialDelay = "100ms")
    void flushEnqueuedMarks() {
        try {
            service.flushEnqueuedMarks();
        } catch (RuntimeException e) {
            LOG.warn("Writing enqueued marks failed (the reconciler confirms those tasks): {}", e.getMessage());
        }
    }

    /** The marks gathered since the last flush, at shutdown. */
    @jakarta.annotation.PreDestroy
    void close() {
        flushEnqueuedMarks();
    }

    @Scheduled(fixedDelay = "${kage.reconcile.every:5s}", initialDelay = "5s")
    void reconcile() {
        try {
            service.reconcile();
        } catch (RuntimeException e) {
            LOG.warn("Reconciler pass failed (retrying in a few seconds): {}", e.getMessage());
        }
    }
}
