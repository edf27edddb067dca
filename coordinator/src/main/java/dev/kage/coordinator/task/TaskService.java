package dev.kage.coordinator.task;

import dev.kage.KageException;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.DeadLetter;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.JobMessage;
import dev.kage.task.LiveTaskState;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.redis.RedisPipeline;
import io.lettuce.core.RedisException;
import io.lettuce.core.RedisNoScriptException;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Clock;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Accepts, cancels and replays tasks. Thread-safe.
 *
 * <p><b>No dual-write gap.</b> A single submit's task row is written first, with {@code enqueued_at} empty; then
 * each job is added to its stream through a script that adds a job attempt at most once; then
 * {@code enqueued_at} is set. A coordinator that dies in between, or a Redis that is down at that
 * moment, leaves a queued task with {@code enqueued_at} empty, which {@link #reconcile} (run every
 * few seconds by every coordinator) enqueues: the enqueue-once script makes a second enqueue of the
 * same attempt a no-op, so a task is neither stuck nor run twice. A job never exists without its row.
 *
 * <p>{@code enqueued_at} of single submits is written in batches ({@link #flushEnqueuedMarks}, every 100 ms): one
 * {@code UPDATE} for all the tasks enqueued since, instead of a second transaction per submit (the load scenario: about
 * a third of Postgres's work per submit). A mark not yet written when the coordinator dies only makes the reconciler
 * enqueue the task again, which the enqueue-once script turns into a no-op.
 *
 * <p>A batch's rows are inserted already marked, with one {@code enqueue_outbox} row naming them in the same
 * statement, and the request is answered once they are committed: the batch relay (one thread, batches in the order
 * they are handed to it) adds the jobs and events to Redis meanwhile, and once they are in, the flusher deletes the
 * outbox row. The relay works beside the requests that follow, so Postgres's insert of one batch and Redis's enqueue of
 * the one before it overlap (batch submits about 16 % faster on average side by side; BENCHMARKS.md, session 15). An {@code UPDATE} of 1,000 rows cost Postgres
 * more than their insert (about 16 µs a row against 9: not a HOT update, since an index's predicate reads
 * {@code enqueued_at}). An outbox row older than {@link #RECONCILE_AFTER_SECONDS} (its coordinator died, or Redis
 * refused the jobs) is handed back by {@link #reconcile}: its open tasks lose their mark and are checked like any
 * unconfirmed task.
 */
public final class TaskService {
    private static final Logger LOG = LoggerFactory.getLogger(TaskService.class);
    /** A task younger than this is still being enqueued by the coordinator that accepted it. */
    static final long RECONCILE_AFTER_SECONDS = 5;
    /** Recorded batches the relay holds at most (the one it is enqueuing included) before a batch submit waits for room. */
    public static final int RELAY_BATCHES = 4;
    /**
     * How long a batch submit waits for room in the relay; past that (Redis slow or down), its batch is left to the
     * reconciler by its outbox row and the request is answered all the same.
     */
    static final java.time.Duration RELAY_WAIT = java.time.Duration.ofSeconds(2);
    /**
     * After Redis failed the relay with a transient error (down, a timeout), the relay leaves the batches it is handed for
     * this long to the reconciler instead of waiting out a command timeout for each.
     */
    static final java.time.Duration RELAY_BACK_OFF = java.time.Duration.ofSeconds(5);

    private final KageSettings settings;
    private final TaskStore store;
    private final JobQueue queue;
    private final LiveTaskState live;
    private final EventLog events;
    private final Clock clock;
    private final MeterRegistry registry;
    private final RedisPipeline pipeline;
    private final java.util.concurrent.ConcurrentLinkedQueue<UUID> enqueuedMarks = new java.util.concurrent.ConcurrentLinkedQueue<>();
    /** Outbox rows of batches whose jobs are all in Redis, deleted with the next marks. */
    private final java.util.concurrent.ConcurrentLinkedQueue<UUID> confirmedOutboxes = new java.util.concurrent.ConcurrentLinkedQueue<>();
    /**
     * The batch relay: one thread that adds committed batches' jobs and events to Redis, in the order they are handed to
     * it (a client's batches in the order it sent them), while the requests that recorded them are answered and the next
     * batches are parsed and inserted.
     */
    private final java.util.concurrent.ExecutorService relay = java.util.concurrent.Executors.newSingleThreadExecutor(
            Thread.ofPlatform().name("kage-batch-relay").daemon(true).factory());
    /**
     * Batches handed to the relay and not yet in Redis, at most {@value #RELAY_BATCHES}: a request that finds the relay
     * full waits for room, first come first served (back-pressure to the client), up to {@link #RELAY_WAIT}.
     */
    private final java.util.concurrent.Semaphore relayRoom = new java.util.concurrent.Semaphore(RELAY_BATCHES, true);
    /** {@link System#nanoTime} of the relay's last transient Redis failure; 0 when none. */
    private volatile long relayFailedAt;
    /** How long {@link #close} lets the relay finish the batches it holds before leaving them to the reconciler. */
    private static final java.time.Duration RELAY_DRAIN = java.time.Duration.ofSeconds(5);

    /**
     * @param registry where {@code kage_tasks_submitted_total{tenant,priority}} is counted
     * @param pipeline carries a submit's Redis writes (live state, jobs, event) in one shared flush
     */
    public TaskService(KageSettings settings, TaskStore store, JobQueue queue, LiveTaskState live, EventLog events, Clock clock,
                       MeterRegistry registry, RedisPipeline pipeline) {
        this.pipeline = pipeline;
        this.settings = settings;
        this.store = store;
        this.queue = queue;
        this.live = live;
        this.events = events;
        this.clock = clock;
        this.registry = registry;
    }

    /** A task was accepted (recorded; a replay of an idempotent request is not counted again). */
    private void submitted(TaskRecord task) {
        submittedCounter(task.tenant(), task.priority()).increment();
    }

    /** A batch's tasks were accepted: counted by priority, one increment each. */
    private void submitted(String tenant, List<TaskRecord> tasks) {
        int[] byPriority = new int[dev.kage.task.Priority.values().length];
        for (TaskRecord task : tasks) {
            byPriority[task.priority().ordinal()]++;
        }
        for (dev.kage.task.Priority priority : dev.kage.task.Priority.values()) {
            if (byPriority[priority.ordinal()] > 0) {
                submittedCounter(tenant, priority).increment(byPriority[priority.ordinal()]);
            }
        }
    }

    private Counter submittedCounter(String tenant, dev.kage.task.Priority priority) {
        return submittedCounters.computeIfAbsent(tenant + '\n' + priority.wireName(), key ->
                Counter.builder("kage.tasks.submitted").description("Tasks accepted, by tenant and priority")
                        .tag("tenant", tenant).tag("priority", priority.wireName()).register(registry));
    }

    /** {@code kage.tasks.submitted} by tenant and priority, looked up once each (a registry lookup per submit builds its tags). */
    private final Map<String, Counter> submittedCounters = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * Records and enqueues a task. With an idempotency key, a repeated request returns the task the
     * first one created.
     *
     * @param idempotencyKey the {@code Idempotency-Key} header, or {@code null}
     * @param body           the raw request body, whose hash tells a repeat from a different request
     * @throws IdempotencyConflictException when the key was used for a different request
     */
    public Submitted submit(String tenant, SubmitRequest request, String idempotencyKey, byte[] body) {
        UUID id = dev.kage.task.TaskIds.next(clock);
        long tokenLimit = request.maxTokens() == null ? settings.maxTokensPerTask() : request.maxTokens();
        String baseBranch = request.baseBranch() == null ? settings.baseBranch() : request.baseBranch();
        TaskRecord task = new TaskRecord(id, tenant, request.description(), TaskStatus.QUEUED, request.priority(),
                request.repo(), baseBranch, request.assignments(), request.metadataJson(), tokenLimit, clock.instant(),
                clock.instant(), null);
        if (idempotencyKey == null) {
            store.insert(task);
        } else {
            String hash = sha256(body);
            Optional<TaskStore.Existing> existing = store.insertIdempotent(task, idempotencyKey, hash);
            if (existing.isPresent()) {
                if (!existing.get().requestHash().equals(hash)) {
                    throw new IdempotencyConflictException("Idempotency-Key '" + idempotencyKey
                            + "' was used for a different request (task " + existing.get().task().id() + ")");
                }
                return new Submitted(existing.get().task(), true);
            }
        }
        submitted(task);
        enqueue(task);
        return new Submitted(task, false);
    }

    /**
     * Records many tasks in one statement, already marked enqueued, with the batch's {@code enqueue_outbox} row, and hands
     * them to the batch relay, which enqueues their jobs (script calls of 100 jobs) and events after this returns; the
     * outbox row is deleted by {@link #flushEnqueuedMarks} once they are in Redis. The relay holds at most
     * {@value #RELAY_BATCHES} batches: beyond that, this waits for room up to {@link #RELAY_WAIT}, then leaves the batch
     * to the reconciler.
     *
     * <p>With an idempotency key, the batch is recorded once: task {@code i} holds the key {@link #batchTaskKey}, and a
     * repeat of the request (same key, same body) returns the tasks the first one created, in order, without enqueuing
     * anything again (the first request did, or the reconciler does). A batch's keys are its own: a single submit with
     * the same {@code Idempotency-Key} is another request.
     *
     * @param idempotencyKey the {@code Idempotency-Key} header, or {@code null}
     * @param body           the raw request body, whose hash tells a repeat from a different request
     * @throws IdempotencyConflictException when the key was used for a different batch
     */
    public BatchSubmitted submitBatch(String tenant, List<SubmitRequest> requests, String idempotencyKey, byte[] body) {
        List<TaskRecord> tasks = new java.util.ArrayList<>(requests.size());
        // Ids counting up in the order sent, the outbox row's after them.
        List<UUID> ids = dev.kage.task.TaskIds.next(clock, requests.size() + 1);
        for (SubmitRequest request : requests) {
            tasks.add(new TaskRecord(ids.get(tasks.size()), tenant, request.description(), TaskStatus.QUEUED, request.priority(),
                    request.repo(), request.baseBranch() == null ? settings.baseBranch() : request.baseBranch(),
                    request.assignments(), request.metadataJson(),
                    request.maxTokens() == null ? settings.maxTokensPerTask() : request.maxTokens(), clock.instant(),
                    clock.instant(), null));
        }
        UUID outbox = ids.getLast();
        if (idempotencyKey == null) {
            store.insertAll(tasks, outbox);
        } else {
            String hash = sha256(body);
            List<String> keys = java.util.stream.IntStream.range(0, tasks.size()).mapToObj(i -> batchTaskKey(idempotencyKey, i))
                    .toList();
            Optional<List<TaskStore.Existing>> existing = store.insertAllIdempotent(tasks, keys, hash, outbox);
            if (existing.isPresent()) {
                List<TaskStore.Existing> found = existing.get();
                if (found.size() != tasks.size() || found.stream().anyMatch(e -> !hash.equals(e.requestHash()))) {
                    throw new IdempotencyConflictException("Idempotency-Key '" + idempotencyKey
                            + "' was used for a different request (a batch of other tasks)");
                }
                return new BatchSubmitted(found.stream().map(TaskStore.Existing::task).toList(), true);
            }
        }
        return new BatchSubmitted(enqueueBatch(tenant, tasks, outbox), false);
    }

    /**
     * The idempotency key of task {@code index} of a batch sent with {@code Idempotency-Key: batchKey}. The separator
     * (ASCII RS) is not a printable character, so no header key, which is, can name a batch's task.
     */
    static String batchTaskKey(String batchKey, int index) {
        return batchKey + '\u001e' + index;
    }

    /**
     * Hands a recorded batch to the relay, which enqueues its jobs and events and then has its outbox row deleted; the
     * request is answered meanwhile. The rows are committed, so the batch is accepted whatever becomes of this: a relay
     * that fails (Redis refused, or the coordinator stopped) leaves the outbox row to the reconciler.
     */
    private List<TaskRecord> enqueueBatch(String tenant, List<TaskRecord> tasks, UUID outbox) {
        submitted(tenant, tasks);
        try {
            if (!relayRoom.tryAcquire(RELAY_WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
                LOG.warn("A batch of {} tasks is recorded but the batch relay stayed full for {} s (Redis slow or down); "
                        + "the reconciler enqueues it", tasks.size(), RELAY_WAIT.toSeconds());
                return tasks;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            LOG.warn("A batch of {} tasks is recorded but its enqueue was interrupted; the reconciler enqueues it", tasks.size());
            return tasks;
        }
        try {
            relay.execute(() -> {
                try {
                    relayBatch(tenant, tasks, outbox);
                } catch (Throwable e) {
                    LOG.error("The batch relay failed on a batch of {} tasks; the reconciler enqueues it", tasks.size(), e);
                    if (e instanceof Error error) {
                        throw error;
                    }
                } finally {
                    relayRoom.release();
                }
            });
        } catch (java.util.concurrent.RejectedExecutionException stopping) {
            relayRoom.release();
            LOG.warn("A batch of {} tasks is recorded while the coordinator stops; the reconciler enqueues it", tasks.size());
        }
        return tasks;
    }

    /** The fields of a {@code task.submitted} event, as the relay writes them. */
    private static final List<String> SUBMITTED_FIELDS = List.of("task_id", "tenant", "agents");

    /** On the relay's thread: a committed batch's jobs and events into Redis, then its outbox row confirmed. */
    private void relayBatch(String tenant, List<TaskRecord> tasks, UUID outbox) {
        long failedAt = relayFailedAt;
        if (failedAt != 0 && System.nanoTime() - failedAt < RELAY_BACK_OFF.toNanos()) {
            LOG.warn("A batch of {} tasks is recorded while Redis failed the relay moments ago; the reconciler enqueues it",
                    tasks.size());
            return;
        }
        try {
            List<JobMessage> jobs = new java.util.ArrayList<>(tasks.size());
            List<String[]> submitted = new java.util.ArrayList<>(tasks.size());
            for (TaskRecord task : tasks) {
                String id = task.id().toString();
                addJobs(task, id, jobs);
                submitted.add(new String[] {id, tenant, agentsOf(task)});
            }
            // Both sent before either is awaited: Redis runs the events' calls while the jobs' replies come back. An
            // event of a task whose job Redis refused is still true (the task is accepted; the reconciler enqueues it).
            var enqueued = queue.sendEnqueueAll(jobs);
            var published = events.sendPublishAll("task.submitted", SUBMITTED_FIELDS, submitted);
            JobQueue.added(enqueued);
            published.await();
        } catch (RedisException e) {
            if (dev.kage.redis.RedisErrors.isTransient(e)) {
                relayFailedAt = System.nanoTime();
            }
            LOG.error("A batch of {} tasks is recorded but Redis refused its jobs ({}); the reconciler enqueues them", tasks.size(),
                    e.getMessage());
            return;
        }
        relayFailedAt = 0;
        confirmedOutboxes.add(outbox);
        LOG.info("Batch of {} tasks for tenant {} queued", tasks.size(), tenant);
    }

    /**
     * At shutdown: lets the relay finish the batches it holds (up to {@link #RELAY_DRAIN}), then deletes their outbox rows
     * and writes the marks gathered since the last flush. Batches still held after that are left to any coordinator's
     * reconciler, by their outbox rows.
     */
    public void close() {
        relay.shutdown();
        boolean interrupted = false;
        try {
            if (!relay.awaitTermination(RELAY_DRAIN.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
                LOG.warn("The batch relay did not finish within {} s; the reconciler enqueues what it held", RELAY_DRAIN.toSeconds());
                relay.shutdownNow();
            }
        } catch (InterruptedException e) {
            interrupted = true;
            relay.shutdownNow();
        }
        try {
            flushEnqueuedMarks();
        } catch (RuntimeException e) {
            LOG.warn("Writing enqueued marks at shutdown failed (the reconciler confirms those tasks): {}", e.getMessage());
        }
        if (interrupted) {
            // Only now: an interrupted thread could not take a pooled connection for the flush above.
            Thread.currentThread().interrupt();
        }
    }

    /** True once {@link #close} has begun: the relay takes no more batches. */
    public boolean closing() {
        return relay.isShutdown();
    }

    private static List<JobMessage> jobsOf(TaskRecord task) {
        List<JobMessage> jobs = new java.util.ArrayList<>(task.assignments().size());
        addJobs(task, task.id().toString(), jobs);
        return jobs;
    }

    /** The task's first attempts, one per assignment, added to {@code jobs}; {@code id} is the task's id as text. */
    private static void addJobs(TaskRecord task, String id, List<JobMessage> jobs) {
        for (Assignment a : task.assignments()) {
            jobs.add(new JobMessage(JobMessage.jobId(id, a.cliName()), id, task.tenant(), a.cliName(), task.priority(),
                    task.description(), task.repo() == null ? "" : task.repo(), task.baseBranch(), a.timeoutSeconds(),
                    task.tokenLimit(), 1));
        }
    }

    /** The task's agents, comma-separated, as its {@code task.submitted} event names them. */
    private static String agentsOf(TaskRecord task) {
        List<Assignment> assignments = task.assignments();
        if (assignments.size() == 1) {
            return assignments.getFirst().cliName();
        }
        StringBuilder agents = new StringBuilder();
        for (Assignment a : assignments) {
            agents.append(agents.isEmpty() ? "" : ",").append(a.cliName());
        }
        return agents.toString();
    }

    /**
     * Adds the task's jobs to their streams (each attempt once, however often this runs) and marks the
     * task enqueued. A Redis outage leaves the task for {@link #reconcile}.
     *
     * @return true when every job is in Redis
     */
    boolean enqueue(TaskRecord task) {
        return enqueue(task, jobsOf(task), true) == Enqueued.YES;
    }

    /** What became of an enqueue. */
    private enum Enqueued {
        YES,
        /** Redis answered with an error for these jobs (a clobbered key, say): others may still go in. */
        REFUSED,
        /** Redis did not answer (down, a timeout): nothing else will go in now. */
        UNREACHABLE;

        static Enqueued failed(RedisException e) {
            return dev.kage.redis.RedisErrors.isTransient(e) ? UNREACHABLE : REFUSED;
        }
    }

    /** {@link #enqueue(TaskRecord)} of some of the task's jobs (the reconciler's: those missing from Redis). */
    private Enqueued enqueue(TaskRecord task, List<JobMessage> jobs, boolean logRefusal) {
        String id = task.id().toString();
        List<String> agents = task.assignments().stream().map(Assignment::cliName).toList();
        try {
            try {
                pipeline.call(async -> {
                    List<java.util.concurrent.CompletionStage<?>> replies = new java.util.ArrayList<>();
                    replies.add(live.created(async, task.tenant(), id, agents));
                    jobs.forEach(job -> replies.add(queue.enqueue(async, job)));
                    replies.add(events.publish(async, "task.submitted",
                            Map.of("task_id", id, "tenant", task.tenant(), "agents", String.join(",", agents))));
                    return RedisPipeline.all(replies.toArray(java.util.concurrent.CompletionStage[]::new));
                });
            } catch (RedisNoScriptException restarted) {
                // Redis restarted since the script was loaded: the rest of the flush went through; enqueue through
                // the path that loads the script (an attempt already added is not added twice).
                jobs.forEach(queue::enqueue);
            }
        } catch (RedisException e) {
            if (logRefusal) {
                LOG.error("Task {} is recorded but Redis refused its jobs ({}); the reconciler enqueues it when Redis answers",
                        id, e.getMessage());
            }
            return Enqueued.failed(e);
        }
        enqueuedMarks.add(task.id());
        // DEBUG: at a thousand submits a second a line each would be most of the log; kage.events has every submit.
        LOG.debug("Task {} for tenant {} queued for {}", id, task.tenant(), agents);
        return Enqueued.YES;
    }

    /**
     * Enqueues the jobs of a task that a dead letter's replay reopened and whose Redis step did not happen (each attempt
     * once: the replay's own script may have added it meanwhile), without the submit's live state and event, which would
     * write the task's other, ended jobs queued again.
     *
     * @param replayed the replayed attempts the reconciler looked for (job id to attempt): the task's are confirmed
     */
    private Enqueued enqueueReplayed(TaskRecord task, List<JobMessage> jobs, Map<String, Integer> replayed) {
        try {
            for (JobMessage job : jobs) {
                if (queue.wasEnqueued(job)) {
                    continue; // added meanwhile: by the replay this pass caught halfway, which said so itself
                }
                // Before the job exists, as a replay says it (a worker may start it at once).
                live.jobRetrying(task.tenant(), job.taskId(), job.agent(), job.attempt(), clock.instant());
                events.publish("job.requeued", Map.of("task_id", job.taskId(), "tenant", task.tenant(), "agent", job.agent(),
                        "attempt", Integer.toString(job.attempt()), "reason", "replay"));
                queue.enqueue(job);
            }
        } catch (RedisException e) {
            LOG.error("Task {} was reopened by a replay, but Redis refused its jobs ({}); retried when Redis answers", task.id(),
                    e.getMessage());
            return Enqueued.failed(e);
        }
        // Its replayed attempts are all in Redis now (found there, done, or just added): confirmed with the mark.
        markVerified(List.of(task), replayed);
        return Enqueued.YES;
    }

    /**
     * Writes {@code enqueued_at} of the tasks enqueued since the last call, in one statement (up to 10,000; the rest
     * at the next call). When Postgres refuses, the marks are dropped: the reconciler finds those tasks, sees their jobs
     * in Redis (or done), and marks them. One call at a time: the shutdown's last flush waits for the scheduler's.
     *
     * @return tasks marked
     */
    public synchronized int flushEnqueuedMarks() {
        List<UUID> outboxes = new java.util.ArrayList<>();
        UUID id;
        while (outboxes.size() < 1_000 && (id = confirmedOutboxes.poll()) != null) {
            outboxes.add(id);
        }
        if (!outboxes.isEmpty()) {
            try {
                store.deleteOutbox(outboxes);
            } catch (RuntimeException e) {
                LOG.warn("Could not delete the outbox rows of {} enqueued batches ({}); the reconciler confirms their tasks",
                        outboxes.size(), e.getMessage());
            }
        }
        List<UUID> ids = new java.util.ArrayList<>();
        while (ids.size() < 10_000 && (id = enqueuedMarks.poll()) != null) {
            ids.add(id);
        }
        if (ids.isEmpty()) {
            return 0;
        }
        try {
            store.markAllEnqueued(ids);
        } catch (RuntimeException e) {
            LOG.warn("Could not mark {} tasks enqueued ({}); the reconciler confirms them", ids.size(), e.getMessage());
            return 0;
        }
        return ids.size();
    }

    /** Unconfirmed tasks a reconciler pass reads at a time, and at most this many pages a pass (every few seconds). */
    static final int RECONCILE_PAGE = 500;
    static final int RECONCILE_PAGES = 20;
    /** Stale outbox rows a reconciler pass hands back, taken 100 at a time until their tasks reach this many. */
    static final int RECONCILE_OUTBOX_TASKS = 10_000;
    /** Unconfirmed tasks a pass names one by one in its log; the rest are counted in one line. */
    static final int RECONCILE_LOGGED = 20;

    /**
     * Enqueues queued tasks whose jobs were never confirmed in Redis (a coordinator died between the
     * row and the streams, or Redis was down): first hands back stale batch outbox rows (until they name
     * {@link #RECONCILE_OUTBOX_TASKS}), then goes through the unconfirmed tasks older than {@link #RECONCILE_AFTER_SECONDS}
     * in pages ({@link #RECONCILE_PAGES} of {@link #RECONCILE_PAGE} at most a pass; a task Redis refuses does not
     * hold back those after it). A Redis that does not answer ends the pass.
     *
     * @return tasks enqueued
     */
    public int reconcile() {
        int named = 0;
        while (named < RECONCILE_OUTBOX_TASKS) {
            TaskStore.Released released = store.releaseStaleOutbox(RECONCILE_AFTER_SECONDS, 100);
            if (released.rows() == 0) {
                break;
            }
            named += released.named();
            LOG.warn("Reconciler: {} batch(es) whose enqueue was never confirmed (their coordinator died, or Redis refused "
                    + "them): {} of their {} task(s), those not ended, are checked against Redis", released.rows(),
                    released.reopened(), released.named());
        }
        int done = 0;
        int[] seen = {0};
        TaskRecord after = null;
        try {
            for (int pages = 0; pages < RECONCILE_PAGES; pages++) {
                List<TaskRecord> page = store.unenqueued(RECONCILE_AFTER_SECONDS, after, RECONCILE_PAGE);
                PageReconciled reconciled = reconcile(page, seen);
                done += reconciled.enqueued();
                if (reconciled.unreachable() || page.size() < RECONCILE_PAGE) {
                    break;
                }
                after = page.getLast();
            }
        } finally {
            if (seen[0] > RECONCILE_LOGGED) {
                LOG.info("Reconciler: {} task(s) were never confirmed in Redis ({} logged by id); {} enqueued this pass",
                        seen[0], RECONCILE_LOGGED, done);
            }
        }
        return done;
    }

    /** One page of {@link #reconcile()}. */
    private PageReconciled reconcile(List<TaskRecord> page, int[] seen) {
        int done = 0;
        Map<String, Integer> replayed = new java.util.HashMap<>();
        Map<UUID, List<JobMessage>> missing = page.isEmpty() ? Map.of() : missingJobs(page, replayed);
        // Tasks whose jobs reached Redis (or ran already: a worker deletes a job's marker once its row is committed)
        // that the coordinator which added them did not mark; adding a finished job again would run it twice. Their
        // replayed attempts, as found, are confirmed with the mark.
        markVerified(page.stream().filter(task -> !missing.containsKey(task.id())).toList(), replayed);
        for (TaskRecord task : page) {
            List<JobMessage> jobs = missing.getOrDefault(task.id(), List.of());
            if (jobs.isEmpty()) {
                continue;
            }
            if (jobs.stream().anyMatch(job -> job.attempt() > 1)) {
                LOG.info("Reconciler: task {} was reopened by a dead letter's replay that did not reach Redis; enqueuing {}",
                        task.id(), jobs.stream().map(job -> job.jobId() + " attempt " + job.attempt()).toList());
                Enqueued enqueued = enqueueReplayed(task, jobs, replayed);
                if (enqueued == Enqueued.UNREACHABLE) {
                    return new PageReconciled(done, true);
                }
                done += enqueued == Enqueued.YES ? 1 : 0;
                continue;
            }
            if (++seen[0] <= RECONCILE_LOGGED) {
                LOG.info("Reconciler: task {} was never confirmed in Redis; enqueuing it", task.id());
            }
            // One task Redis refuses (a clobbered key of its agent) must not hold back every task after it; one Redis
            // does not answer for ends the pass.
            Enqueued enqueued = enqueue(task, jobs, seen[0] <= RECONCILE_LOGGED);
            if (enqueued == Enqueued.UNREACHABLE) {
                return new PageReconciled(done, true);
            }
            done += enqueued == Enqueued.YES ? 1 : 0;
        }
        return new PageReconciled(done, false);
    }

    /** @param unreachable Redis did not answer: the pass ends */
    private record PageReconciled(int enqueued, boolean unreachable) {
    }

    /**
     * {@link TaskStore#markVerified} of the tasks, with those of the replayed attempts that are theirs; when Postgres
     * refuses, the next pass finds them again.
     */
    private void markVerified(List<TaskRecord> tasks, Map<String, Integer> replayed) {
        if (tasks.isEmpty()) {
            return;
        }
        Map<String, Integer> theirs = new java.util.HashMap<>();
        for (TaskRecord task : tasks) {
            for (Assignment a : task.assignments()) {
                String job = JobMessage.jobId(task.id().toString(), a.cliName());
                Integer attempt = replayed.get(job);
                if (attempt != null) {
                    theirs.put(job, attempt);
                }
            }
        }
        try {
            store.markVerified(tasks.stream().map(TaskRecord::id).toList(), theirs);
        } catch (dev.kage.store.StoreException e) {
            LOG.debug("Reconciler: {} task(s) found in Redis were not marked ({}); the next pass marks them", tasks.size(),
                    e.getMessage());
        }
    }

    /**
     * The tasks' jobs that are neither in Redis (their attempt's enqueue-once marker is gone) nor done (no result row;
     * for a replayed job, none for its replayed attempt). The rows are read again after the markers: a worker lets a
     * job's marker expire once its row is committed, so a job that finished between the first read and its marker's
     * check is seen done, never as missing.
     */
    private Map<UUID, List<JobMessage>> missingJobs(List<TaskRecord> tasks) {
        return missingJobs(tasks, new java.util.HashMap<>());
    }

    /** {@link #missingJobs(List)}, putting into {@code replayed} the replayed attempts it looked for (job id to attempt). */
    private Map<UUID, List<JobMessage>> missingJobs(List<TaskRecord> tasks, Map<String, Integer> replayed) {
        List<UUID> ids = tasks.stream().map(TaskRecord::id).toList();
        java.util.Set<String> done = store.jobsWithOutcome(ids);
        // A job a dead letter's replay put back is due as that attempt: its marker is that attempt's, and so is the enqueue.
        replayed.putAll(store.replayedAttempts(ids));
        List<JobMessage> undone = new java.util.ArrayList<>();
        for (TaskRecord task : tasks) {
            for (JobMessage first : jobsOf(task)) {
                Integer due = replayed.get(first.jobId());
                JobMessage job = due == null ? first : first.withAttempt(due);
                if (!done.contains(job.jobId())) {
                    undone.add(job);
                }
            }
        }
        java.util.Set<JobMessage> enqueued = queue.enqueuedAmong(undone);
        Map<UUID, List<JobMessage>> markerless = new java.util.LinkedHashMap<>();
        for (JobMessage job : undone) {
            if (!enqueued.contains(job)) {
                markerless.computeIfAbsent(UUID.fromString(job.taskId()), id -> new java.util.ArrayList<>()).add(job);
            }
        }
        if (markerless.isEmpty()) {
            return markerless;
        }
        java.util.Set<String> doneSince = store.jobsWithOutcome(List.copyOf(markerless.keySet()));
        markerless.values().forEach(jobs -> jobs.removeIf(job -> doneSince.contains(job.jobId())));
        markerless.values().removeIf(List::isEmpty);
        return markerless;
    }

    /**
     * Enqueues again the jobs Redis lost: a task not yet ended, confirmed in Redis, whose job has no outcome
     * and whose enqueue-once marker is gone. With {@code appendfsync everysec} a Redis that dies with its machine
     * (or restarts from an older AOF or snapshot) loses up to a second or two of writes, among them jobs the API
     * had already accepted; nothing else would ever run them. Run after Redis restarted ({@link Reconciler}); a
     * job is added once however often this runs (the enqueue-once script), and one whose marker survived is left
     * alone, and so is one whose result row exists (read after its marker: a worker deletes the marker once the row is
     * committed). A job queued for longer than {@link JobQueue#ENQUEUE_MARKER_TTL} would be added a second time.
     *
     * @return jobs enqueued again
     */
    public int requeueLost() {
        return requeueLost(new java.util.ArrayList<>());
    }

    /**
     * As {@link #requeueLost()}, adding to {@code refused} the jobs Redis refused with an error about the job itself (a
     * damaged key of its agent), for {@link #requeueRefused} to try again.
     */
    public int requeueLost(List<JobMessage> refused) {
        int requeued = 0;
        TaskRecord after = null;
        while (true) {
            List<TaskRecord> page = store.openEnqueued(after, 500);
            if (page.isEmpty()) {
                return requeued;
            }
            for (var entry : missingJobs(page).entrySet()) {
                for (JobMessage job : entry.getValue()) {
                    try {
                        if (queue.enqueue(job).isPresent()) {
                            requeued++;
                            LOG.warn("Reconciler: job {} of task {} was missing from Redis (lost with Redis's last writes); "
                                    + "enqueued it again", job.jobId(), entry.getKey());
                        }
                    } catch (RedisException e) {
                        if (dev.kage.redis.RedisErrors.isTransient(e)) {
                            throw e; // Redis not ready (down, loading, failing over): the whole pass runs again
                        }
                        // Refused for this job alone (a damaged key of its agent): the jobs after it are enqueued, and the
                        // caller looks again at its next pass.
                        refused.add(job);
                        LOG.error("Reconciler: job {} of task {} was missing from Redis, which refused to enqueue it again "
                                + "({}); the jobs after it go on, and it is tried again at each pass", job.jobId(), entry.getKey(),
                                e.getMessage());
                    }
                }
            }
            after = page.getLast();
        }
    }

    /**
     * Tries again the lost jobs Redis refused ({@link #requeueLost(List)}); those it refuses again stay in {@code refused}.
     * A job that ended meanwhile (a result row) or is in Redis again is dropped.
     *
     * @return jobs enqueued
     */
    public int requeueRefused(List<JobMessage> refused) {
        int requeued = 0;
        java.util.Set<String> done = store.jobsWithOutcome(refused.stream().map(j -> UUID.fromString(j.taskId())).distinct().toList());
        for (java.util.Iterator<JobMessage> it = refused.iterator(); it.hasNext(); ) {
            JobMessage job = it.next();
            if (done.contains(job.jobId()) || queue.wasEnqueued(job)) {
                it.remove();
                continue;
            }
            try {
                queue.enqueue(job);
                it.remove();
                requeued++;
                LOG.warn("Reconciler: job {}, lost with Redis's last writes and refused before, was enqueued again", job.jobId());
            } catch (RedisException e) {
                if (dev.kage.redis.RedisErrors.isTransient(e)) {
                    throw e;
                }
            }
        }
        return requeued;
    }

    /** Tasks younger than this have markers and live state fresh from their submit: {@link #renewWaiting} leaves them. */
    static final java.time.Duration RENEW_AFTER = java.time.Duration.ofDays(1);

    /**
     * Keeps what Redis knows of jobs that wait long for a worker (an agent nobody serves for days) from expiring while
     * they wait: their enqueue-once markers ({@link JobQueue#ENQUEUE_MARKER_TTL}) and their tasks' live state
     * ({@link LiveTaskState#TTL}). A marker that expired under a queued job made {@link #requeueLost} (after any Redis
     * or coordinator restart) add the job a second time, and both entries ran. Only keys that exist are renewed; tasks
     * not ended and older than {@link #RENEW_AFTER}, a page at a time, one pipelined round trip a page. Run hourly.
     *
     * @return keys renewed
     */
    public int renewWaiting() {
        java.time.Instant before = clock.instant().minus(RENEW_AFTER);
        TaskRecord after = null;
        int renewed = 0;
        while (true) {
            List<TaskRecord> page = store.openCreatedBefore(before, after, 500);
            if (page.isEmpty()) {
                return renewed;
            }
            Map<String, Integer> replayed = store.replayedAttempts(page.stream().map(TaskRecord::id).toList());
            List<Boolean> done = pipeline.call(async -> {
                List<java.util.concurrent.CompletableFuture<Boolean>> replies = new java.util.ArrayList<>();
                for (TaskRecord task : page) {
                    replies.add(async.pexpire(keys().task(task.tenant(), task.id().toString()), LiveTaskState.TTL.toMillis())
                            .toCompletableFuture());
                    for (JobMessage job : jobsOf(task)) {
                        Integer attempt = replayed.get(job.jobId());
                        replies.add(async.pexpire(keys().enqueued(job.agent(), job.jobId(), attempt == null ? 1 : attempt),
                                JobQueue.ENQUEUE_MARKER_TTL.toMillis()).toCompletableFuture());
                    }
                }
                return java.util.concurrent.CompletableFuture.allOf(replies.toArray(java.util.concurrent.CompletableFuture[]::new))
                        .thenApply(v -> replies.stream().map(java.util.concurrent.CompletableFuture::join).toList());
            });
            renewed += (int) done.stream().filter(Boolean.TRUE::equals).count();
            after = page.getLast();
        }
    }

    private dev.kage.redis.KageKeys keys() {
        return queue.keys();
    }

    /**
     * Cancels the tenant's task: queued jobs never start, running agents are stopped by their workers
     * within a second (their process trees killed, their reservations released).
     *
     * @return the status before, or empty when the tenant has no such task
     */
    public Optional<TaskStatus> cancel(String tenant, UUID taskId) {
        Optional<TaskStatus> before = store.cancel(tenant, taskId);
        if (before.isPresent() && !before.get().isFinal()) {
            LOG.info("Task {} of tenant {} cancelled (was {})", taskId, tenant, before.get().wireName());
            try {
                passOnCancel(tenant, taskId);
            } catch (RedisException e) {
                // The cancel is durable in Postgres, with a pending_cancels row, but workers learn of it from Redis: until
                // they do, a queued job could still start. A reconciler passes it on when Redis answers; the cancel stands.
                LOG.warn("Task {} is cancelled, but Redis refused the cancel ({}); it is passed on to the workers when Redis "
                        + "answers", taskId, e.getMessage());
            } catch (dev.kage.store.StoreException e) {
                LOG.warn("Task {}'s cancel reached Redis, but its pending_cancels row was not deleted ({}); a reconciler "
                        + "passes it on again, harmlessly", taskId, e.getMessage());
            }
        }
        return before;
    }

    /**
     * Tells the workers (the task's live state in Redis) and the event stream that the task is cancelled, then drops its
     * pending_cancels row. Idempotent: a cancel passed on twice changes nothing more.
     */
    private void passOnCancel(String tenant, UUID taskId) {
        live.cancel(tenant, taskId.toString());
        events.publish("task.cancelled", Map.of("task_id", taskId.toString(), "tenant", tenant,
                "task_status", TaskStatus.CANCELLED.wireName()));
        store.cancelPassedOn(taskId);
    }

    /** How long a cancel's own request has to pass it on before a reconciler does. */
    static final int CANCEL_PASS_ON_AFTER_SECONDS = 5;

    /**
     * Passes on the cancels that have not reached Redis {@value #CANCEL_PASS_ON_AFTER_SECONDS} s after they were made
     * (their coordinator died, or Redis refused them); those Redis refuses again wait for the next call. Called by the
     * reconciler.
     *
     * @return cancels passed on
     */
    public int passOnPendingCancels() {
        int passed = 0;
        for (Map.Entry<String, UUID> cancel : store.pendingCancels(CANCEL_PASS_ON_AFTER_SECONDS, 500)) {
            try {
                passOnCancel(cancel.getKey(), cancel.getValue());
            } catch (RedisException e) {
                LOG.debug("Task {}'s cancel still cannot reach Redis: {}", cancel.getValue(), e.getMessage());
                return passed;
            }
            passed++;
            LOG.info("Task {}'s cancel reached Redis; its workers stop it", cancel.getValue());
        }
        return passed;
    }

    /** The newest cancels {@link #passOnRecentCancels} writes again at most. */
    static final int MAX_CANCELS_PASSED_AGAIN = 100_000;

    /**
     * Passes on again every cancel made within the live state's lifetime ({@link LiveTaskState#TTL}), a page of 500 per
     * pipelined round trip. A Redis that restarted has lost its last second of writes (AOF {@code everysec}), or more
     * when it came back from an older snapshot: a cancel lost that way, its pending_cancels row long deleted, was never
     * sent again, and a job of the task whose entry survived started. Called by the reconciler when Redis is a new
     * server process, before anything is enqueued again; idempotent.
     *
     * @return cancels passed on
     */
    public int passOnRecentCancels() {
        List<Map.Entry<String, UUID>> cancelled = store.cancelledWithin(LiveTaskState.TTL, MAX_CANCELS_PASSED_AGAIN);
        for (int from = 0; from < cancelled.size(); from += 500) {
            List<Map.Entry<String, UUID>> page = cancelled.subList(from, Math.min(cancelled.size(), from + 500));
            pipeline.call(async -> RedisPipeline.all(page.stream()
                    .map(task -> live.cancel(async, task.getKey(), task.getValue().toString()))
                    .toArray(java.util.concurrent.CompletionStage[]::new)));
        }
        return cancelled.size();
    }

    /**
     * The tenant's dead letters, newest first. Every letter of the fleet is looked at if need be: the stream keeps at
     * most {@code KAGE_DEAD_LETTER_MAX} (workers trim it to theirs; set it alike everywhere), so another tenant's many
     * letters cannot hide this one's.
     */
    public List<DeadLetter> deadLetters(String tenant, String agent, int limit) {
        return queue.deadLetters(tenant, agent, limit, settings.queue().deadLetterMax());
    }

    /**
     * Replays the tenant's newest {@code limit} dead letters of jobs (of {@code agent} only, unless null), oldest of
     * them first, each as {@link #replay} does: once, however often this runs, also beside single replays. Letters
     * that are not jobs, and those of cancelled tasks, are passed over, so they never stop the letters behind them from
     * being replayed.
     *
     * @return the jobs enqueued again, with the letters they came from
     */
    public List<Map.Entry<String, JobMessage>> replayDeadLetters(String tenant, String agent, int limit) {
        List<DeadLetter> letters = new java.util.ArrayList<>(queue.deadLetters(tenant, agent, limit,
                settings.queue().deadLetterMax(), letter -> letter.notAJob().isEmpty() && !cancelled(tenant, letter)));
        java.util.Collections.reverse(letters);
        List<Map.Entry<String, JobMessage>> replayed = new java.util.ArrayList<>();
        for (DeadLetter letter : letters) {
            replay(tenant, letter.id()).ifPresent(job -> replayed.add(Map.entry(letter.id(), job)));
        }
        if (!replayed.isEmpty()) {
            LOG.info("Replayed {} dead letter(s) of tenant {}{}", replayed.size(), tenant, agent == null ? "" : " for " + agent);
        }
        return replayed;
    }

    /**
     * Removes the tenant's dead letter without replaying it: its job stays failed, with its error rows.
     *
     * @return the letter removed, or empty when the tenant has no such letter
     */
    public Optional<DeadLetter> discardDeadLetter(String tenant, String deadLetterId) {
        Optional<DeadLetter> letter = queue.deadLetter(deadLetterId).filter(l -> tenant.equals(l.fields().get("tenant")));
        // A replay begun and never finished holds the letter; once its task is cancelled, nothing of it can run, and the
        // letter (which a replay now refuses with 409) is discarded over it.
        boolean overReplay = letter.isPresent() && letter.get().notAJob().isEmpty() && cancelled(tenant, letter.get());
        if (letter.isEmpty() || !queue.discardDeadLetter(letter.get(), overReplay)) {
            return Optional.empty();
        }
        Map<String, String> fields = letter.get().fields();
        Map<String, String> event = new java.util.HashMap<>();
        event.put("tenant", tenant);
        event.put("dead_letter_id", deadLetterId);
        if (fields.get("task_id") != null) {
            event.put("task_id", fields.get("task_id"));
        }
        if (fields.get("agent") != null) {
            event.put("agent", fields.get("agent"));
        }
        events.publish("job.discarded", event);
        LOG.info("Dead letter {} of tenant {} discarded (task {})", deadLetterId, tenant, fields.get("task_id"));
        return letter;
    }

    /**
     * Puts the tenant's dead letter back on its stream as a new attempt.
     *
     * @return the job as enqueued; empty when the tenant has no such letter or it was replayed already
     */
    public Optional<JobMessage> replay(String tenant, String deadLetterId) {
        Optional<DeadLetter> letter = queue.deadLetter(deadLetterId).filter(l -> tenant.equals(l.fields().get("tenant")));
        if (letter.isEmpty()) {
            return Optional.empty();
        }
        Optional<String> notAJob = letter.get().notAJob();
        if (notAJob.isPresent()) {
            throw new NotAJobException("dead letter " + deadLetterId + " is not a job (" + notAJob.get()
                    + "): it cannot be replayed, only discarded");
        }
        if (cancelled(tenant, letter.get())) {
            // Its task stays cancelled (a replay reopens only failed ones), and the job would run: the cancel is kept.
            throw new TaskCancelledException("dead letter " + deadLetterId + " is a job of task " + letter.get().job().taskId()
                    + ", which was cancelled: it is not run again (discard the letter)");
        }
        // Postgres first: the task reopens (running, cancellable, its replayed attempt recorded) before the job exists, and
        // it is left unmarked-enqueued, so a replay whose Redis step fails (a 503) is finished by the reconciler instead of
        // leaving the task running with nothing to run. In the other order a failed reopen left the job running under a
        // task still failed, which a cancel could not stop.
        // The letter's mark first: a letter discarded (or replayed) meanwhile never reopens its task, and one being
        // replayed cannot be discarded until this replay is done.
        if (!queue.beginReplay(letter.get())) {
            return Optional.empty();
        }
        JobMessage next = letter.get().job().withAttempt(letter.get().job().attempt() + 1);
        UUID taskId = UUID.fromString(next.taskId());
        boolean reopened;
        try {
            reopened = store.reopen(taskId, next.jobId(), next.attempt());
        } catch (RuntimeException e) {
            queue.abandonReplay(letter.get());
            throw e;
        }
        if (!reopened) {
            // Its attempt ran already (the reconciler enqueued it after a replay of this letter failed in Redis).
            LOG.info("Dead letter {} is stale: attempt {} of job {} ran already; the letter is removed", deadLetterId,
                    next.attempt(), next.jobId());
            queue.finishStaleReplay(letter.get());
            return Optional.empty();
        }
        // Said before the job exists: a worker may start it the moment it is added, and its job.started (and the live
        // state it writes) must come after, not be followed by a "replayed, waiting" that is no longer true.
        live.jobRetrying(tenant, next.taskId(), next.agent(), next.attempt(), clock.instant());
        events.publish("job.replayed", Map.of("task_id", next.taskId(), "tenant", tenant, "agent", next.agent(),
                "attempt", Integer.toString(next.attempt()), "dead_letter_id", deadLetterId));
        Optional<JobMessage> replayed = queue.replay(letter.get(), next.attempt());
        // This attempt confirmed and the task marked, unless another replay of the task reopened it and has not
        // confirmed its own attempt (its Redis step may yet fail: the reconciler must keep looking at the task).
        try {
            store.markVerified(List.of(taskId), Map.of(next.jobId(), next.attempt()));
        } catch (dev.kage.store.StoreException e) {
            LOG.debug("Task {}'s enqueued mark after a replay was not written ({}); the reconciler writes it", taskId,
                    e.getMessage());
        }
        if (replayed.isEmpty()) {
            LOG.warn("Dead letter {} was replayed by another call meanwhile; its job.replayed event was published twice",
                    deadLetterId);
        }
        return replayed;
    }

    private static String sha256(byte[] body) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(body == null ? new byte[0] : body));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * @param task     the task
     * @param replayed true when an earlier request with the same idempotency key created it
     */
    public record Submitted(TaskRecord task, boolean replayed) {
    }

    /**
     * What a batch submit created, or found when {@code replayed}.
     *
     * @param tasks    the batch's tasks, in the order sent
     * @param replayed true when an earlier request with the same idempotency key created them
     */
    public record BatchSubmitted(List<TaskRecord> tasks, boolean replayed) {
    }

    /** Whether the letter's task was cancelled (or is no task of the tenant's any more). */
    private boolean cancelled(String tenant, DeadLetter letter) {
        return store.find(tenant, UUID.fromString(letter.job().taskId()))
                .map(task -> task.status() == TaskStatus.CANCELLED).orElse(true);
    }

    /** A dead letter of a cancelled task was to be replayed; answered with 409. */
    public static final class TaskCancelledException extends KageException {
        public TaskCancelledException(String message) {
            super(message, false);
        }
    }

    /** A dead letter that is not a job was to be replayed; answered with 422. */
    public static final class NotAJobException extends KageException {
        public NotAJobException(String message) {
            super(message, false);
        }
    }

    /** An idempotency key reused with a different body; answered with 422. */
    public static final class IdempotencyConflictException extends KageException {
        public IdempotencyConflictException(String message) {
            super(message, false);
        }
    }

}
