package dev.kage.coordinator.task;

import dev.kage.KageException;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobMessage;
import dev.kage.task.LiveTaskState;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import io.lettuce.core.RedisException;
import java.time.Clock;
import java.util.Map;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Accepts tasks: writes the task to Postgres, then one job per assignment to its agent's stream.
 * Thread-safe.
 *
 * <p>Order and failure: the row is written first, so a job never exists without its task. When the
 * stream write fails, the task is marked {@code failed} with an {@code EnqueueError} row and the
 * caller gets 503; the reconciler that re-enqueues instead is planned with the queue work.
 */
public final class TaskService {
    private static final Logger LOG = LoggerFactory.getLogger(TaskService.class);

    private final KageSettings settings;
    private final TaskStore store;
    private final JobQueue queue;
    private final LiveTaskState live;
    private final EventLog events;
    private final Clock clock;

    public TaskService(KageSettings settings, TaskStore store, JobQueue queue, LiveTaskState live, EventLog events, Clock clock) {
        this.settings = settings;
        this.store = store;
        this.queue = queue;
        this.live = live;
        this.events = events;
        this.clock = clock;
    }

    /**
     * @throws QueueUnavailableException when the jobs could not be enqueued (the task is recorded as failed)
     */
    public TaskRecord submit(String tenant, SubmitRequest request) {
        UUID id = UUID.randomUUID();
        long tokenLimit = request.maxTokens() == null ? settings.maxTokensPerTask() : request.maxTokens();
        String baseBranch = request.baseBranch() == null ? settings.baseBranch() : request.baseBranch();
        TaskRecord task = new TaskRecord(id, tenant, request.description(), TaskStatus.QUEUED, request.priority(),
                request.repo(), baseBranch, request.assignments(), request.metadataJson(), tokenLimit, clock.instant(),
                clock.instant(), null);
        store.insert(task);
        try {
            live.created(tenant, id.toString(), request.assignments().stream().map(Assignment::cliName).toList());
            for (Assignment assignment : request.assignments()) {
                queue.enqueue(new JobMessage(JobMessage.jobId(id.toString(), assignment.cliName()), id.toString(), tenant,
                        assignment.cliName(), request.priority(), request.description(),
                        request.repo() == null ? "" : request.repo(), baseBranch, assignment.timeoutSeconds(), tokenLimit, 1));
            }
            events.publish("task.submitted", Map.of("task_id", id.toString(), "tenant", tenant,
                    "agents", String.join(",", request.assignments().stream().map(Assignment::cliName).toList())));
        } catch (RedisException e) {
            LOG.error("Task {} recorded but its jobs could not be enqueued: {}", id, e.getMessage());
            store.insertError(new ErrorRecord(id, null, null, "EnqueueError", "Jobs could not be written to Redis: "
                    + e.getMessage(), "{}", true, null));
            store.setStatus(id, TaskStatus.FAILED);
            throw new QueueUnavailableException("the queue (Redis) is unavailable; task " + id + " was not started", e);
        }
        LOG.info("Task {} for tenant {} queued for {}", id, tenant,
                request.assignments().stream().map(Assignment::cliName).toList());
        return task;
    }

    /** Redis refused the job; answered with 503. */
    public static final class QueueUnavailableException extends KageException {
        public QueueUnavailableException(String message, Throwable cause) {
            super(message, true, cause);
        }
    }
}
