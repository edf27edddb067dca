package dev.kage.coordinator.task;

import io.micronaut.scheduling.annotation.Scheduled;
import jakarta.inject.Singleton;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every few seconds, enqueues tasks whose jobs never reached Redis; every 100 ms (and at shutdown), writes the
 * enqueued marks of the tasks submitted since (see {@link TaskService}); and when Redis is a new server process since
 * the last pass (its {@code run_id} changed: it restarted, perhaps losing its last writes), or on this coordinator's
 * first pass, enqueues again the accepted jobs Redis no longer has ({@link TaskService#requeueLost}). Scheduled passes
 * never overlap; not meant to be called concurrently.
 */
@Singleton
public class Reconciler {
    private static final Logger LOG = LoggerFactory.getLogger(Reconciler.class);

    private final TaskService service;
    private final dev.kage.queue.JobQueue queue;
    /** The Redis run_id the last complete check for lost jobs was made against; null before the first. */
    private volatile String checkedRunId;

    public Reconciler(TaskService service, dev.kage.queue.JobQueue queue) {
        this.service = service;
        this.queue = queue;
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
            String runId = queue.serverRunId();
            if (!runId.equals(checkedRunId)) {
                int requeued = service.requeueLost();
                if (checkedRunId != null || requeued > 0) {
                    LOG.info("Redis is a new server process (run_id {}); {} accepted job(s) it no longer had were enqueued again",
                            runId, requeued);
                }
                checkedRunId = runId;
            }
        } catch (RuntimeException e) {
            LOG.warn("Reconciler pass failed (retrying in a few seconds): {}", e.getMessage());
        }
    }
}
