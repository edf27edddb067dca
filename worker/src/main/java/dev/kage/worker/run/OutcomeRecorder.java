package dev.kage.worker.run;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule;
import dev.kage.redis.KageKeys;
import dev.kage.store.StoreException;
import dev.kage.store.TaskStore;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobStatus;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskStatus;
import io.lettuce.core.api.sync.RedisCommands;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes job outcomes to Postgres, or, while Postgres is down, keeps them in the agent's outbox list in
 * Redis ({@code kage:outbox:{agent}}) and writes them when it answers again. Writing is idempotent
 * (one result per job attempt, error rows by key), so an outcome flushed twice is stored once.
 *
 * <p>Outcomes are written by one writer thread in group commits: whatever outcomes wait when it is
 * free go into one transaction (at most {@value #MAX_BATCH}), and each job thread waits until its own
 * outcome is durable. Under light load a batch is one outcome, so nothing waits for a timer; under
 * heavy load one transaction carries many. A job's start (its task queued → running) goes with the
 * first group commit after {@value #START_RIPENS_MS} ms, or with its task's outcome if that comes first.
 * Thread-safe.
 */
public final class OutcomeRecorder {
    private static final Logger LOG = LoggerFactory.getLogger(OutcomeRecorder.class);
    private static final ObjectMapper JSON = new ObjectMapper().registerModule(new JavaTimeModule())
            .disable(SerializationFeature.WRITE_DATES_AS_TIMESTAMPS);

    /** Outcomes one group commit carries at most. */
    static final int MAX_BATCH = 500;
    /**
     * How long a start waits to be written, unless an outcome of its task goes first: a job that ends at once (a no-op,
     * a refused request) then costs its task row one update, not "running" in one group commit and its end in the next.
     * Nobody sees a start this much later; an agent process takes longer than this to start.
     */
    static final long START_RIPENS_MS = 10;
    static final java.time.Duration START_RIPENS = java.time.Duration.ofMillis(START_RIPENS_MS);
    /** How long a start whose write failed waits before the writer tries it again (Postgres is away). */
    static final java.time.Duration START_RETRY = java.time.Duration.ofSeconds(1);

    private final TaskStore store;
    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private final java.util.concurrent.BlockingQueue<Pending> pending = new java.util.concurrent.LinkedBlockingQueue<>();
    /**
     * Outcomes waiting in {@link #pending}, per task: a task's start waits for its outcome when one is already on the
     * way (the writer is a batch or two behind), instead of being written alone just before it.
     */
    private final java.util.concurrent.ConcurrentHashMap<java.util.UUID, Integer> queuedOutcomes =
            new java.util.concurrent.ConcurrentHashMap<>();
    /** Tasks whose jobs started since their last write, each with when ({@link System#nanoTime}) it may be written. */
    private final java.util.concurrent.ConcurrentHashMap<java.util.UUID, Long> started = new java.util.concurrent.ConcurrentHashMap<>();
    /**
     * Whether an outcome went to an outbox since Postgres last answered: set by the first spool of an
     * outage (which logs it), cleared by the first write that succeeds afterwards (which logs that).
     */
    private final java.util.concurrent.atomic.AtomicBoolean outage = new java.util.concurrent.atomic.AtomicBoolean();

    public OutcomeRecorder(TaskStore store, KageKeys keys, RedisCommands<String, String> redis) {
        this.store = store;
        this.keys = keys;
        this.redis = redis;
        Thread.ofPlatform().daemon().name("kage-outcome-writer").start(this::writeLoop);
    }

    /** Told of each final result {@link #flush} wrote, with its task's status after it. */
    private volatile java.util.function.BiConsumer<ResultRecord, TaskStatus> lateRecords = (result, status) -> { };

    /**
     * Announces each final result the outbox's flush writes, as a job's finish announces a result written at once: the
     * task's live state gets the job's and the task's status, and a {@code job.recorded} event carries
     * {@code task_status}. A job that finished while Postgres was away was announced without it, so a task's event stream
     * (and {@code kage --wait}) waited for an event that ends the task for ever, and its live state stayed running.
     */
    public void announceLateRecords(dev.kage.task.LiveTaskState live, dev.kage.events.EventLog events) {
        lateRecords = (result, status) -> store.tenantOf(result.taskId()).ifPresent(tenant -> {
            String taskId = result.taskId().toString();
            live.jobFinished(tenant, taskId, result.cliName(), result.status(), status);
            events.publish("job.recorded", java.util.Map.of("task_id", taskId, "tenant", tenant, "agent", result.cliName(),
                    "status", result.status().wireName(), "attempt", Integer.toString(result.attempt()),
                    "task_status", status.wireName()));
        });
    }

    /**
     * Notes that a job of the task started; a group commit moves a queued task to running within
     * {@link #START_RIPENS} (or with its outcome, if that comes first). Never blocks.
     */
    public void started(java.util.UUID taskId) {
        started.putIfAbsent(taskId, System.nanoTime() + START_RIPENS.toNanos());
        pending.offer(Pending.WAKE_UP);
    }

    /**
     * Records a final outcome and returns once it is durable (in Postgres, or in the outbox while
     * Postgres is down). Waits through interrupts: a stopped job's outcome is still written.
     *
     * @return the task's status, or empty when the outcome went to the outbox
     */
    public Optional<TaskStatus> record(String agent, ResultRecord result, List<ErrorRecord> errors) {
        Pending entry = new Pending(agent, new TaskStore.Outcome(result, errors), new java.util.concurrent.CompletableFuture<>());
        queuedOutcomes.merge(result.taskId(), 1, Integer::sum);
        pending.add(entry);
        return entry.done().join();
    }

    private void writeLoop() {
        List<Pending> batch = new java.util.ArrayList<>(MAX_BATCH);
        while (true) {
            try {
                long wait = nanosUntilAStartRipens();
                Pending first = wait == Long.MAX_VALUE ? pending.take()
                        : pending.poll(wait, java.util.concurrent.TimeUnit.NANOSECONDS);
                if (first != null) {
                    batch.add(first);
                }
            } catch (InterruptedException e) {
                return;
            }
            pending.drainTo(batch, MAX_BATCH - batch.size());
            batch.removeIf(p -> p == Pending.WAKE_UP);
            batch.forEach(p -> queuedOutcomes.computeIfPresent(p.outcome().result().taskId(),
                    (task, n) -> n > 1 ? n - 1 : null));
            java.util.Set<java.util.UUID> marks = takeStarts(batch);
            if (!batch.isEmpty() || !marks.isEmpty()) {
                try {
                    write(batch, marks);
                } catch (RuntimeException e) {
                    // Nothing may end this thread: every later record() would wait for it for ever, and its jobs with it.
                    LOG.error("Writing {} outcomes failed; their jobs stay pending and run again", batch.size(), e);
                    failed(batch, marks, e);
                }
            }
            batch.clear();
        }
    }

    /** Nanoseconds until the first noted start may be written (0: one may now); {@link Long#MAX_VALUE} when none waits. */
    private long nanosUntilAStartRipens() {
        long now = System.nanoTime();
        long wait = Long.MAX_VALUE;
        for (long ripe : started.values()) {
            wait = Math.min(wait, Math.max(0, ripe - now));
        }
        return wait;
    }

    /**
     * Takes the starts to write with {@code batch}: those of tasks with an outcome in it, and the ripe ones of tasks
     * with no outcome on the way.
     */
    private java.util.Set<java.util.UUID> takeStarts(List<Pending> batch) {
        java.util.Set<java.util.UUID> withOutcome = new java.util.HashSet<>();
        batch.forEach(p -> withOutcome.add(p.outcome().result().taskId()));
        long now = System.nanoTime();
        java.util.Set<java.util.UUID> marks = new java.util.HashSet<>();
        started.forEach((task, ripe) -> {
            boolean due = withOutcome.contains(task) || (ripe - now <= 0 && !queuedOutcomes.containsKey(task));
            if (due && started.remove(task, ripe)) {
                marks.add(task);
            }
        });
        return marks;
    }

    private void write(List<Pending> batch, java.util.Set<java.util.UUID> marks) {
        try {
            var statuses = store.recordOutcomes(batch.stream().map(Pending::outcome).toList(), marks);
            answered();
            for (Pending p : batch) {
                TaskStatus status = statuses.get(p.outcome().result().taskId());
                if (status == null) {
                    // No task row for it (a restored database, a worker on another schema): kept for an operator, never
                    // dropped without a word. The job is acknowledged as for an outcome in the outbox.
                    refuse(p.agent(), new Spooled(p.outcome().result(), p.outcome().errors()),
                            "task " + p.outcome().result().taskId() + " has no row");
                }
                p.done().complete(Optional.ofNullable(status));
            }
        } catch (StoreException e) {
            if (refusedForContent(e) && batch.size() > 1) {
                // One outcome Postgres refuses for its content must not send the batch to the outbox: each alone.
                retryLater(marks);
                for (Pending p : batch) {
                    try {
                        write(List.of(p), java.util.Set.of());
                    } catch (RuntimeException alone) {
                        LOG.error("Writing the outcome of job {} failed; it stays pending and runs again",
                                p.outcome().result().jobId(), alone);
                        p.done().completeExceptionally(alone);
                    }
                }
                return;
            }
            if (refusedForContent(e)) {
                retryLater(marks);
                Pending refused = batch.getFirst();
                // Set aside in Redis; when Redis refuses that too (two faults at once), the caller's exception leaves
                // the job pending rather than ending it with its outcome kept nowhere.
                refuse(refused.agent(), new Spooled(refused.outcome().result(), refused.outcome().errors()), e.getMessage());
                refused.done().complete(endInstead(refused.agent(), refused.outcome().result(), e));
                return;
            }
            // The starts were not written: tried again in a while (a task that ended meanwhile stays ended).
            retryLater(marks);
            for (Pending p : batch) {
                try {
                    spool(p.agent(), new Spooled(p.outcome().result(), p.outcome().errors()), e);
                    p.done().complete(Optional.empty());
                } catch (RuntimeException redisToo) {
                    p.done().completeExceptionally(redisToo);
                }
            }
        } catch (RuntimeException e) {
            failed(batch, marks, e);
        }
    }

    /** A batch neither written nor kept: its outcomes' callers get the error, its starts are tried again later. */
    private void failed(List<Pending> batch, java.util.Set<java.util.UUID> marks, RuntimeException e) {
        retryLater(marks);
        batch.forEach(p -> p.done().completeExceptionally(e));
    }

    private void retryLater(java.util.Set<java.util.UUID> marks) {
        long retry = System.nanoTime() + START_RETRY.toNanos();
        marks.forEach(task -> started.putIfAbsent(task, retry));
    }

    /** An outcome waiting for the writer; {@link #WAKE_UP} only makes it look at the started marks. */
    private record Pending(String agent, TaskStore.Outcome outcome,
                           java.util.concurrent.CompletableFuture<Optional<TaskStatus>> done) {
        static final Pending WAKE_UP = new Pending(null, null, null);
    }

    /** Records the errors of an attempt that will be retried. */
    public void recordErrors(String agent, List<ErrorRecord> errors) {
        try {
            store.insertErrors(errors);
            answered();
        } catch (StoreException e) {
            spool(agent, new Spooled(null, errors), e);
        }
    }

    /**
     * Writes what the agent's outbox holds, oldest first, stopping at the first failure.
     *
     * @return outcomes written
     */
    public int flush(String agent) {
        String key = keys.outbox(agent);
        int written = 0;
        String head;
        while ((head = redis.lindex(key, 0)) != null) {
            Spooled spooled;
            try {
                spooled = JSON.readValue(head, Spooled.class);
            } catch (JsonProcessingException e) {
                LOG.error("Outbox {} holds an unreadable entry; moved aside: {}", key, e.getOriginalMessage());
                redis.rpush(key + ":unreadable", head);
                redis.lrem(key, 1, head);
                continue;
            }
            try {
                if (spooled.result() != null) {
                    TaskStatus status = store.recordOutcome(spooled.result(), spooled.errors());
                    announceLate(spooled.result(), status);
                } else {
                    store.insertErrors(spooled.errors());
                }
            } catch (StoreException e) {
                if (!refusedForContent(e)) {
                    return written;
                }
                // Refused for what it holds, not for being away: it would stop the flush here for ever.
                refuse(agent, spooled, e.getMessage());
                if (spooled.result() != null) {
                    endInstead(agent, spooled.result(), e);
                }
                redis.lrem(key, 1, head);
                continue;
            } catch (IllegalStateException noTaskRow) {
                refuse(agent, spooled, noTaskRow.getMessage());
                redis.lrem(key, 1, head);
                continue;
            }
            redis.lrem(key, 1, head);
            written++;
        }
        if (written > 0) {
            LOG.info("Wrote {} outcome(s) kept in {} while Postgres was unavailable", written, key);
            answered();
        }
        return written;
    }

    private void announceLate(ResultRecord result, TaskStatus status) {
        try {
            lateRecords.accept(result, status);
        } catch (RuntimeException e) {
            // Written is what counts; the announcement is for watchers, and Redis or Postgres may blink right now.
            LOG.warn("Job {}'s outcome was written from the outbox, but announcing it failed: {}", result.jobId(), e.getMessage());
        }
    }

    /**
     * Notes that Postgres took a write. An empty outbox proves nothing (another agent's, or another
     * worker's flush, may have emptied it), so only a write ends an outage.
     */
    private void answered() {
        if (outage.compareAndSet(true, false)) {
            LOG.info("Postgres answers again: outcomes are written directly; the outboxes drain");
        }
    }

    /** Outcomes handed to {@link #record} and not yet taken by the writer. */
    int outcomesWaiting() {
        return queuedOutcomes.values().stream().mapToInt(Integer::intValue).sum();
    }

    /**
     * Whether the agent's outbox holds the final result of this attempt: an outcome kept there while Postgres was away
     * is recorded, though Postgres does not have it yet. Read through the whole list (it is short but in an outage).
     */
    public boolean spooled(String agent, String jobId, int attempt) {
        return spooledEntry(agent, jobId, attempt) != null;
    }

    /**
     * Whether the agent's outbox holds an error row with this key ({@code <job>#<attempt>#<type>}), kept there with its
     * outcome while Postgres was away. Read through the whole list, as {@link #spooled} is.
     */
    public boolean spooledError(String agent, String jobId, int attempt, String errorKey) {
        Spooled entry = spooledEntry(agent, jobId, attempt);
        return entry != null && entry.errors() != null
                && entry.errors().stream().anyMatch(error -> errorKey.equals(error.errorKey()));
    }

    private Spooled spooledEntry(String agent, String jobId, int attempt) {
        for (String entry : redis.lrange(keys.outbox(agent), 0, -1)) {
            if (!entry.contains(jobId)) {
                continue;
            }
            try {
                Spooled spooled = JSON.readValue(entry, Spooled.class);
                ResultRecord result = spooled.result();
                if (result != null && result.jobId().equals(jobId) && result.attempt() == attempt) {
                    return spooled;
                }
            } catch (JsonProcessingException unreadable) {
                // Moved aside by the next flush; it answers for no job.
            }
        }
        return null;
    }

    /** Outcomes waiting in the agent's outbox. */
    public long pending(String agent) {
        return redis.llen(keys.outbox(agent));
    }

    /**
     * Whether Postgres refused the statement for the data it carries (SQLSTATE classes 22, data exception, and 23,
     * integrity constraint violation), which no retry changes, rather than for being away or overloaded.
     */
    static boolean refusedForContent(Throwable error) {
        for (Throwable cause = error; cause != null; cause = cause.getCause()) {
            if (cause instanceof java.sql.SQLException sql && sql.getSQLState() != null
                    && (sql.getSQLState().startsWith("22") || sql.getSQLState().startsWith("23"))) {
                return true;
            }
        }
        return false;
    }

    /**
     * Ends the job whose outcome Postgres refused with a failed result that holds none of its content (summary, usage,
     * patch) and an {@code OutcomeRefusedError} row naming the reason, so that its task does not stay running for ever;
     * the outcome itself waits in the refused list. When Postgres went away meanwhile, the failed result waits in the
     * agent's outbox like any outcome, and is written when Postgres answers; only when Postgres refuses it too for its
     * content (or Redis refuses to keep it) does the task keep its status.
     *
     * @return the task's status after it, or empty when it is in the outbox or could not be written
     */
    private Optional<TaskStatus> endInstead(String agent, ResultRecord refused, StoreException cause) {
        String message = "Postgres refused the outcome of job " + refused.jobId() + " (" + truncate(cause.getMessage(), 300)
                + "); it is kept in the worker's refused list for an operator";
        ResultRecord failed = new ResultRecord(refused.taskId(), refused.jobId(), refused.cliName(), JobStatus.FAILED, message,
                0, 0, 0, 0, java.math.BigDecimal.ZERO, refused.usageSource(), null, refused.durationMs(), refused.exitCode(),
                refused.branch(), null, null, refused.workerId(), refused.attempt(), null);
        ErrorRecord error = new ErrorRecord(refused.taskId(), refused.jobId(), refused.cliName(), "OutcomeRefusedError", message,
                "{}", false, null, refused.jobId() + "#" + refused.attempt() + "#OutcomeRefusedError");
        try {
            return Optional.of(store.recordOutcome(failed, List.of(error)));
        } catch (StoreException e) {
            if (!refusedForContent(e)) {
                try {
                    spool(agent, new Spooled(failed, List.of(error)), e);
                    return Optional.empty();
                } catch (RuntimeException redisToo) {
                    LOG.error("Could not end job {} after its outcome was refused: Postgres and Redis refused the failed result "
                            + "({}; {}); its task keeps its status", refused.jobId(), e.getMessage(), redisToo.getMessage());
                    return Optional.empty();
                }
            }
            LOG.error("Could not end job {} after its outcome was refused either: {}", refused.jobId(), e.getMessage());
            return Optional.empty();
        } catch (RuntimeException e) {
            LOG.error("Could not end job {} after its outcome was refused either: {}", refused.jobId(), e.getMessage());
            return Optional.empty();
        }
    }

    private static String truncate(String text, int max) {
        return text == null || text.length() <= max ? text : text.substring(0, max) + "…";
    }

    /** Keeps an outcome Postgres will never take in {@code kage:outbox:{agent}:refused}, loudly. */
    private void refuse(String agent, Spooled spooled, String reason) {
        String job = spooled.result() != null ? spooled.result().jobId()
                : spooled.errors().isEmpty() ? "?" : spooled.errors().getFirst().jobId();
        LOG.error("Postgres refused the outcome of job {} ({}); kept in {} for an operator", job, reason,
                keys.outboxRefused(agent));
        try {
            redis.rpush(keys.outboxRefused(agent), JSON.writeValueAsString(spooled));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private void spool(String agent, Spooled spooled, StoreException cause) {
        if (outage.compareAndSet(false, true)) {
            LOG.error("Postgres unavailable ({}); keeping outcomes in {} until it answers", cause.getMessage(), keys.outbox(agent));
        }
        try {
            redis.rpush(keys.outbox(agent), JSON.writeValueAsString(spooled));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * One outcome in the outbox.
     *
     * @param result the final result, or {@code null} for the errors of a retried attempt
     */
    record Spooled(ResultRecord result, List<ErrorRecord> errors) {
    }
}
