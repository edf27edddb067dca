package dev.kage.coordinator.task;

import io.micronaut.scheduling.annotation.Scheduled;
import jakarta.inject.Singleton;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every few seconds, enqueues tasks whose jobs never reached Redis; every 100 ms (and at shutdown), writes the
 * enqueued marks of the tasks submitted since (see {@link TaskService}); and when Redis is a new server process since
 * the last pass (its {@code run_id} changed: it restarted, perhaps losing its last writes), or on this coordinator's
 * first pass, enqueues again the accepted jobs Redis no longer has ({@link TaskService#requeueLost}); after a restart it
 * saw, only once {@link dev.kage.queue.JobQueue#LOST_ENTRY_GRACE} has passed, by when each worker has stopped the runs
 * whose entries Redis lost (their second runs never overlap the first). Scheduled passes
 * never overlap; not meant to be called concurrently.
 */
@Singleton
public class Reconciler {
    private static final Logger LOG = LoggerFactory.getLogger(Reconciler.class);

    private final TaskService service;
    private final dev.kage.queue.JobQueue queue;
    /** The Redis run_id the last complete check for lost jobs was made against; null before the first. */
    private volatile String checkedRunId;
    /** A run_id seen since that check, and when ({@link System#nanoTime}): the check waits for the workers' beats. */
    private volatile String newRunId;
    private volatile long newRunIdSeenAt;

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
                if (!runId.equals(newRunId)) {
                    newRunId = runId;
                    newRunIdSeenAt = System.nanoTime();
                }
                if (checkedRunId != null && System.nanoTime() - newRunIdSeenAt < dev.kage.queue.JobQueue.LOST_ENTRY_GRACE.toNanos()) {
                    // Redis restarted while this coordinator watched: a job it lost may still run on a worker until that
                    // worker's next beat finds its entry gone and stops it; enqueuing it now could run it twice at once.
                    return;
                }
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
