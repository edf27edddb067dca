package dev.kage.worker.run;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.BudgetLedger.Hold;
import dev.kage.budget.BudgetLedger.HoldRequest;
import dev.kage.budget.BudgetLedger.PoolKind;
import dev.kage.budget.BudgetLedger.PoolSettlement;
import dev.kage.budget.BudgetLedger.Refusal;
import dev.kage.budget.BudgetLedger.Settlement;
import dev.kage.budget.PeriodLimits;
import dev.kage.config.BudgetMode;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.redis.RedisPipeline;
import io.lettuce.core.RedisException;
import dev.kage.agent.AgentLimits;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.ratelimit.FleetRateLimiter.Decision;
import dev.kage.store.StoreException;
import dev.kage.store.TaskStore;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobMessage;
import dev.kage.task.JobStatus;
import dev.kage.task.LiveTaskState;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskStatus;
import dev.kage.tokens.TokenCounter;
import dev.kage.tokens.Usage;
import dev.kage.worker.WorkerSettings;
import dev.kage.worker.agent.AgentReport;
import dev.kage.worker.agent.HttpAgentClient;
import dev.kage.worker.agent.OutputParser;
import dev.kage.worker.metrics.WorkerMetrics;
import dev.kage.worker.process.ProcessOutcome;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.worktree.GitException;
import dev.kage.task.UrlCredentials;
import dev.kage.worker.worktree.Worktree;
import dev.kage.worker.worktree.WorktreeManager;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one claimed job from reservation to acknowledgement: budget reservation, a fresh worktree on
 * {@code kage/<task>/<agent>}, the fleet-wide rate-limit permit (taken last, just before the agent starts,
 * so the lag between the grant and the provider seeing the call stays small), the agent process, usage,
 * settlement, commit and push, the result and error rows, then {@code XACK}.
 *
 * <p>Rate limits never cost an attempt: a job waits for its permit in its slot up to
 * {@code RATE_LIMIT_MAX_SLOT_WAIT_SECONDS}; a longer wait, or its group's fleet-wide cooldown, sends it to
 * the delayed set (the slot is freed). A run the agent reports as rate limited (429, overloaded) pauses
 * the group for the whole fleet for the seed's backoff ({@code RATE_LIMIT_BACKOFF_BASE} doubling to
 * {@code RATE_LIMIT_BACKOFF_MAX}, at least the provider's {@code Retry-After}) and is deferred as the
 * same attempt; after {@code RATE_LIMIT_MAX_RETRIES} such deferrals the next 429 fails the job with a
 * {@code RateLimitError} row. Every 429 is logged as a {@code RateLimitError} row (retryable while it is
 * deferred, not retryable when it fails the job). A {@link AgentType#NOOP} job skips permit, reservation, worktree and
 * process and completes at once with zero usage. The entry is acknowledged only after its outcome is in
 * Postgres, so a worker that dies midway leaves it pending for another. Thread-safe: one instance
 * runs many jobs at once.
 */
public final class JobRunner {
    private static final Logger LOG = LoggerFactory.getLogger(JobRunner.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    /**
     * This process, in budget hold ids: a worker restarted under the same id holds afresh (its predecessor's hold
     * for the same delivery is released, its settled one does not make the rerun free).
     */
    private static final String PROCESS = Long.toHexString(ThreadLocalRandom.current().nextLong() & 0xffffffffL);
    /** Runs this process started, in budget hold ids: each run holds under an id of its own. */
    private static final java.util.concurrent.atomic.AtomicLong RUNS = new java.util.concurrent.atomic.AtomicLong();
    /** Tokens a provider adds around one user message (role markers, start and end of turn); OpenAI's is 7. */
    static final long CHAT_FORMAT_TOKENS = 16;
    /** Characters of the agent's answer kept in {@code output_summary}. */
    static final int SUMMARY_CHARS = 4_000;

    private final KageSettings settings;
    /** How long a measured offset between Redis's clock and this machine's is used. */
    private static final Duration CLOCK_OFFSET_TTL = Duration.ofSeconds(60);
    /** Redis's clock minus this machine's (ms), and when it was measured (System.nanoTime); null before the first job. */
    private volatile long[] clockOffset;
    private final WorkerSettings worker;
    private final AgentCatalog catalog;
    private final JobQueue queue;
    private final TaskStore store;
    private final LiveTaskState live;
    private final EventLog events;
    private final BudgetLedger budget;
    private final FleetRateLimiter rateLimiter;
    private final WorktreeManager worktrees;
    private final ProcessRunner processes;
    private final OutcomeRecorder outcomes;
    /** A job's start and finish bookkeeping in Redis, sent together with other jobs' (one flush for all that wait). */
    private final RedisPipeline pipeline;
    private final HttpAgentClient http = new HttpAgentClient();
    private final Clock clock;
    private final WorkerMetrics metrics;

    public JobRunner(KageSettings settings, WorkerSettings worker, AgentCatalog catalog, JobQueue queue, TaskStore store,
                     LiveTaskState live, EventLog events, BudgetLedger budget, FleetRateLimiter rateLimiter,
                     WorktreeManager worktrees, ProcessRunner processes, OutcomeRecorder outcomes, RedisPipeline pipeline,
                     Clock clock, WorkerMetrics metrics) {
        this.settings = settings;
        this.worker = worker;
        this.catalog = catalog;
        this.queue = queue;
        this.store = store;
        this.live = live;
        this.events = events;
        this.budget = budget;
        this.rateLimiter = rateLimiter;
        this.worktrees = worktrees;
        this.processes = processes;
        this.outcomes = outcomes;
        this.pipeline = pipeline;
        this.clock = clock;
        this.metrics = metrics;
        metrics.worktreesActive(worktrees::inUse);
        warmUp();
    }

    /**
     * Loads, before the first claim, what a first job would otherwise wait for: the token encodings of the agents this
     * worker serves (jtokkit reads its tables on first use: about half a second each), Git's process start-up and the
     * budget's scripts in Redis.
     */
    private void warmUp() {
        long started = System.nanoTime();
        for (String name : worker.agents()) {
            catalog.find(name).ifPresent(agent -> TokenCounter.count(agent.encoding(), "warm up"));
        }
        try {
            worktrees.warmUp();
        } catch (RuntimeException e) {
            LOG.warn("Git did not start: {}", e.getMessage());
        }
        if (worker.agents().stream().map(catalog::find).flatMap(Optional::stream)
                .anyMatch(agent -> agent.type() != AgentType.NOOP && !agent.type().isHttp())) {
            // The first start on a fresh JVM loads and links the whole spawn path (process builder, the process-group
            // wrapper, the output pumps): about 0.1-0.2 s that would otherwise land on the first jobs' start latency.
            try {
                processes.run(List.of("true"), Path.of(System.getProperty("java.io.tmpdir")), Map.of("PATH", "/usr/bin:/bin"),
                        Duration.ofSeconds(10), () -> { });
            } catch (IOException | RuntimeException e) {
                LOG.warn("A trial start of 'true' failed: {}", e.getMessage());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try {
            budget.warmUp();
        } catch (RuntimeException e) {
            LOG.warn("Budget scripts not loaded yet (Redis: {}); the first reservation loads them", e.getMessage());
        }
        LOG.info("Warmed up in {} ms (token encodings, git, a trial process start, budget scripts)", Duration.ofNanos(System.nanoTime() - started).toMillis());
    }

    /**
     * Makes this worker's budget defaults the fleet's ({@code TENANT_MAX_*}, the served agents' {@code budget:}): what a
     * worker does once it serves (not before: one that exits at start-up, a crash loop with a stale agents.yml, must not
     * change the fleet's limits). Redis refusing it, it is made before this worker's first reservation.
     */
    public void publishBudgetDefaults() {
        Map<String, dev.kage.budget.PeriodLimits> budgets = new java.util.LinkedHashMap<>();
        for (String name : worker.agents()) {
            catalog.find(name).ifPresent(agent -> budgets.put(name, agent.budget()));
        }
        try {
            budget.defaults().publish(budgets);
        } catch (RuntimeException e) {
            LOG.warn("This worker's budget defaults (TENANT_MAX_*, the agents' budget:) not published yet (Redis: {}); "
                    + "published before its first reservation", e.getMessage());
        }
    }

    /**
     * When the claimed entry was queued, on this machine's clock (epoch ms): its stream id is Redis's clock at the
     * enqueue, converted with an offset measured with {@code TIME} at most every {@link #CLOCK_OFFSET_TTL} (error: half a
     * round trip, well inside {@link WorktreeManager#FRESHNESS_MARGIN_MS}). Without Redis, now (the safe side: the job
     * then asks the origin). Thread-safe: racing measurements are equally good.
     */
    private long queuedAtLocalMillis(ClaimedJob claimed) {
        long entryMillis;
        try {
            entryMillis = Long.parseLong(claimed.entryId().substring(0, claimed.entryId().indexOf('-')));
        } catch (RuntimeException e) {
            return System.currentTimeMillis();
        }
        long[] offset = clockOffset;
        if (offset == null || System.nanoTime() - offset[1] > CLOCK_OFFSET_TTL.toNanos()) {
            try {
                long before = System.currentTimeMillis();
                long server = queue.serverMillis();
                long after = System.currentTimeMillis();
                offset = new long[] {server - (before + after) / 2, System.nanoTime()};
                clockOffset = offset;
            } catch (RuntimeException redisDown) {
                return System.currentTimeMillis();
            }
        }
        return Math.min(entryMillis - offset[0], System.currentTimeMillis());
    }

    /**
     * Runs the job to its outcome and acknowledges it; a failed attempt that may be retried is
     * rescheduled instead. When {@code control} stops the job, the entry is handled as the reason says:
     * cancelled (recorded and acknowledged), shutdown (handed back to the queue) or lost (left alone).
     */
    public void run(ClaimedJob claimed, JobControl control) {
        control.bind(Thread.currentThread());
        if (control.reason() == JobControl.StopReason.LOST) {
            // Stopped before it started (the lease ran out, or its entry was taken meanwhile): not ours to touch.
            LOG.warn("Job entry {} stopped before it started; left alone", claimed.key());
            return;
        }
        JobMessage job;
        try {
            job = claimed.job();
        } catch (JobQueue.MalformedJobException e) {
            LOG.error("Dropping a stream entry that is not a job, to the dead letters: {}", e.getMessage());
            queue.deadLetter(claimed, e.getMessage(), settings.queue().deadLetterMax());
            deadLettered(claimed, null);
            return;
        }
        try {
            runJob(claimed, job, control);
        } catch (InterruptedException | RuntimeException e) {
            JobControl.StopReason reason = control.reason();
            if (reason == null) {
                if (e instanceof RuntimeException runtime) {
                    count(claimed, job.agent(), WorkerMetrics.Outcome.ERROR);
                    throw runtime;
                }
                reason = JobControl.StopReason.SHUTDOWN;
            }
            // The interrupt has done its work (the agent is stopped); clear it, or Redis and Postgres calls that
            // record what became of the job would be interrupted too.
            Thread.interrupted();
            stopped(claimed, job, control, reason);
        } finally {
            Thread.interrupted();
        }
    }

    /** Prunes worktrees and {@code kage/*} branches older than {@code WORKTREE_CLEANUP_DAYS} that no job uses. */
    public int pruneOldWorktrees() {
        return worktrees.pruneOlderThan(Duration.ofDays(settings.worktreeCleanupDays()));
    }

    /** Releases budget holds whose lifetime is over (their workers died and the jobs never came back). */
    public int sweepExpiredHolds() {
        return budget.sweepExpired();
    }

    /**
     * An entry delivered {@code deliveries} times that never finished (it kills or hangs its workers):
     * to the dead letters, with a failed result and a {@code PoisonJobError} row.
     */
    public void poisoned(ClaimedJob claimed, long deliveries) {
        String reason = "delivered " + deliveries + " times without finishing";
        JobMessage job;
        try {
            job = claimed.job();
        } catch (JobQueue.MalformedJobException e) {
            String deadId = queue.deadLetter(claimed, reason, settings.queue().deadLetterMax());
            deadLettered(claimed, null);
            LOG.error("Dead-lettered {} as {} (not a job): {}", claimed.key(), deadId, e.getMessage());
            return;
        }
        // Its last delivery may have finished it and died before the XACK: then it is acknowledged, not failed. Postgres
        // unable to say leaves the entry pending for the next pass, as a run would wait.
        try {
            if (recorded(job)) {
                String poisonKey = errorKey(job, "PoisonJobError");
                // Its row may wait in the outbox still (Postgres was away when it was recorded): that counts as recorded.
                boolean poison = store.hasError(poisonKey)
                        || outcomes.spooledError(job.agent(), job.jobId(), job.attempt(), poisonKey)
                        || store.hasError(poisonKey);
                if (poison && !queue.hasDeadLetter(claimed, job.tenant(), job.agent(), settings.queue().deadLetterMax())) {
                    // An earlier pass recorded it as poison and could not write its letter (Redis failed, or the worker
                    // died, in between): acknowledged now, it would stay failed for good, its row pointing at a letter that
                    // does not exist and cannot be replayed.
                    LOG.warn("Job {} attempt {} was recorded as poison but has no dead letter; writing it now", job.jobId(),
                            job.attempt());
                    TaskStatus status = store.find(job.tenant(), UUID.fromString(job.taskId())).map(t -> t.status())
                            .orElse(TaskStatus.RUNNING);
                    live.jobFinished(job.tenant(), job.taskId(), job.agent(), JobStatus.FAILED, status);
                    letter(claimed, job, reason, Optional.of(status));
                    return;
                }
                LOG.info("Job {} attempt {} already has its outcome; acknowledging the re-delivery instead of dead-lettering it",
                        job.jobId(), job.attempt());
                queue.ack(claimed);
                count(claimed, job.agent(), WorkerMetrics.Outcome.DUPLICATE);
                return;
            }
        } catch (StoreException e) {
            LOG.warn("Job {} was {} but Postgres cannot say whether it finished before ({}); left pending until it can",
                    job.jobId(), reason, e.getMessage());
            return;
        }
        // The failure is recorded before the letter exists: a replay can then never be overtaken by it.
        AgentConfig agent = catalog.require(job.agent());
        ErrorRecord error = error(job, "PoisonJobError", "Job " + job.jobId() + " was " + reason
                + "; moved to the dead letters (entry " + claimed.entryId() + " of " + claimed.stream() + ")",
                Map.of("deliveries", deliveries, "dead_from_stream", claimed.stream(), "dead_from_id", claimed.entryId()), false);
        Optional<TaskStatus> taskStatus = outcomes.record(job.agent(), failedResult(job, agent, error.errorMessage(), null),
                List.of(error));
        live.jobFinished(job.tenant(), job.taskId(), job.agent(), JobStatus.FAILED, taskStatus.orElse(TaskStatus.RUNNING));
        letter(claimed, job, reason, taskStatus);
    }

    /** Moves a poison job's entry, its failure recorded, to the dead letters, and says so. */
    private void letter(ClaimedJob claimed, JobMessage job, String reason, Optional<TaskStatus> taskStatus) {
        String deadId = queue.deadLetter(claimed, reason, settings.queue().deadLetterMax());
        deadLettered(claimed, job.agent());
        Map<String, String> event = new HashMap<>(Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "status", JobStatus.FAILED.wireName(), "dead_letter_id", deadId));
        taskStatus.ifPresent(s -> event.put("task_status", s.wireName()));
        events.publish("job.dead_lettered", event);
        LOG.error("Job {} {}; dead letter {}", job.jobId(), reason, deadId);
    }

    private void runJob(ClaimedJob claimed, JobMessage job, JobControl control) throws InterruptedException {
        if (control.reason() != null) {
            throw new InterruptedException("stopped before it started: " + control.reason());
        }
        UUID taskId = UUID.fromString(job.taskId());
        AgentConfig agent = catalog.require(job.agent());
        long hold = control.holdRemainingNanos();
        if (hold > 0) {
            // WorkerRuntime's restart hold: an earlier delivery of this entry may still run elsewhere until its worker
            // stops it. A sleep, not a wait on a condition: the hold ends at a time (that Redis up for 25 s) that nothing
            // here can signal sooner. It starts nothing; a stop (shutdown, cancel, the entry found taken) interrupts it.
            LOG.info("Job {} attempt {} waits {} ms before it starts: Redis restarted moments ago and may have delivered it "
                    + "before", job.jobId(), job.attempt(), TimeUnit.NANOSECONDS.toMillis(hold));
            control.leaveStartLane(); // a wait that needs no CPU: another job may start meanwhile
            Thread.sleep(TimeUnit.NANOSECONDS.toMillis(hold) + 1);
        }
        boolean recorded = claimed.redelivered() && alreadyRecorded(job, control);
        control.outcomeChecked();
        if (recorded) {
            LOG.info("Job {} attempt {} already has its outcome; acknowledging the re-delivery", job.jobId(), job.attempt());
            queue.ack(claimed);
            count(claimed, job.agent(), WorkerMetrics.Outcome.DUPLICATE);
            return;
        }
        // One round trip: a cancel that landed first is seen, one that lands later finds the job running.
        LiveTaskState.StartCheck start = live.startUnlessCancelled(pipeline, job.tenant(), job.taskId(), job.agent(),
                worker.workerId(), waited(claimed));
        if (start == LiveTaskState.StartCheck.NO_LIVE_STATE) {
            // The job waited for a worker so long that its task's live state expired, and a cancel with it: Postgres
            // says. A cancel after this read finds the job running and stops it.
            boolean cancelled = untilPostgresAnswers(job, control, "whether its task was cancelled",
                    () -> store.find(job.tenant(), taskId).map(t -> t.status() == TaskStatus.CANCELLED).orElse(false));
            if (!cancelled) {
                live.jobStarted(job.tenant(), job.taskId(), job.agent(), worker.workerId());
            }
            start = cancelled ? LiveTaskState.StartCheck.CANCELLED : LiveTaskState.StartCheck.STARTED;
        }
        if (start == LiveTaskState.StartCheck.CANCELLED) {
            finish(claimed, job, control, new Outcome(cancelledResult(job, agent, "cancelled before it started", null, null), List.of()));
            return;
        }
        LOG.info("Job {} (attempt {}) starting on {}", job.jobId(), job.attempt(), worker.workerId());
        outcomes.started(taskId);
        // Not waited for: it goes out with the next flush, before anything this job sends later (one connection, in
        // order); if Redis fails it, the job's own bookkeeping fails too and says so.
        Map<String, String> startedEvent = Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "worker", worker.workerId(), "attempt", Integer.toString(job.attempt()));
        pipeline.send(redis -> events.publish(redis, "job.started", startedEvent)).whenComplete((id, error) -> {
            if (error != null) {
                LOG.warn("Event job.started of job {} not published: {}", job.jobId(), error.toString());
            }
        });

        if (agent.type() == AgentType.NOOP) {
            // Nothing to run: no permit, reservation, worktree or process; the bookkeeping around it stays.
            finish(claimed, job, control, new Outcome(noopResult(job, agent), List.of()));
            return;
        }

        Outcome outcome = execute(job, agent, claimed, control);
        if (control.reason() != null && !control.unstoppable()) {
            throw new InterruptedException("stopped: " + control.reason());
        }
        if (outcome.deferral() != null) {
            defer(claimed, job, control, outcome);
            return;
        }
        ErrorRecord retryable = outcome.errors().stream().filter(ErrorRecord::retryable).findFirst().orElse(null);
        if (outcome.result().status() == JobStatus.FAILED && retryable != null && job.attempt() < agent.retry().maxAttempts()) {
            retry(claimed, job, control, outcome, retryable);
            return;
        }
        finish(claimed, job, control, outcome);
    }

    /**
     * Records the outcome (or keeps it in the outbox while Postgres is down), then acknowledges the entry. The job's
     * slot is given back first: the agent is done, and waiting for a group commit needs no slot.
     */
    private void finish(ClaimedJob claimed, JobMessage job, JobControl control, Outcome outcome) {
        control.agentDone();
        Optional<TaskStatus> taskStatus = outcomes.record(job.agent(), outcome.result(), outcome.errors());
        Map<String, String> event = new HashMap<>(Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "status", outcome.result().status().wireName(), "attempt", Integer.toString(job.attempt())));
        taskStatus.ifPresent(s -> event.put("task_status", s.wireName()));
        // Live state, acknowledgement and event in one flush (in this order), shared with other jobs finishing now. The
        // enqueue-once markers go once the result row is committed (not while it waits in the outbox: a job with
        // neither would look lost to the reconciler).
        pipeline.call(redis -> RedisPipeline.all(
                live.jobFinished(redis, job.tenant(), job.taskId(), job.agent(), outcome.result().status(),
                        taskStatus.orElse(TaskStatus.RUNNING)),
                queue.ack(redis, claimed),
                taskStatus.isPresent() ? queue.forgetEnqueued(redis, job) : RedisPipeline.all(),
                events.publish(redis, "job.finished", event)));
        count(claimed, job.agent(), switch (outcome.result().status()) {
            case COMPLETED -> WorkerMetrics.Outcome.COMPLETED;
            case CANCELLED -> WorkerMetrics.Outcome.CANCELLED;
            default -> WorkerMetrics.Outcome.FAILED;
        });
        LOG.info("Job {} {}: {} tokens, ${}, {} ms; task {} is {}{}", job.jobId(), outcome.result().status().wireName(),
                outcome.result().totalTokens(), outcome.result().cost(), outcome.result().durationMs(), job.taskId(),
                taskStatus.map(TaskStatus::wireName).orElse("(outcome kept in the outbox)"),
                outcome.errors().isEmpty() ? "" : " (" + outcome.errors().getFirst().errorType() + ": "
                        + outcome.errors().getFirst().errorMessage() + ")");
    }

    private void retry(ClaimedJob claimed, JobMessage job, JobControl control, Outcome outcome, ErrorRecord cause) {
        // Finishing, as in finish(): the slot goes back, a shutdown does not interrupt the bookkeeping, and the heartbeat
        // does not take the entry the defer below acknowledges for one Redis lost.
        control.agentDone();
        int next = job.attempt() + 1;
        outcomes.recordErrors(job.agent(), outcome.errors());
        Optional<Instant> scheduled = queue.defer(claimed, job.withAttempt(next),
                settings.queue().retryDelay(next, ThreadLocalRandom.current().nextDouble()), worker.workerId());
        if (scheduled.isEmpty()) {
            LOG.warn("Job {} attempt {} failed, but its entry is no longer this worker's (reclaimed); left alone", job.jobId(),
                    job.attempt());
            count(claimed, job.agent(), WorkerMetrics.Outcome.LOST);
            return;
        }
        Instant due = scheduled.get();
        count(claimed, job.agent(), WorkerMetrics.Outcome.RETRIED);
        metrics.retry(job.agent());
        live.jobRetrying(job.tenant(), job.taskId(), job.agent(), next, due);
        events.publish("job.retry_scheduled", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "attempt", Integer.toString(next), "due", due.toString(), "error_type", cause.errorType()));
        LOG.info("Job {} attempt {} failed ({}); attempt {} at {}", job.jobId(), job.attempt(), cause.errorType(), next, due);
    }

    /** Back to the delayed set without using an attempt: waiting for a permit, or paused after a 429. */
    private void defer(ClaimedJob claimed, JobMessage job, JobControl control, Outcome outcome) {
        control.agentDone();
        Deferral deferral = outcome.deferral();
        if (!outcome.errors().isEmpty()) {
            outcomes.recordErrors(job.agent(), outcome.errors());
        }
        Optional<Instant> scheduled = queue.defer(claimed, deferral.next(), deferral.delay(), worker.workerId());
        if (scheduled.isEmpty()) {
            LOG.warn("Job {} was to be deferred ({}), but its entry is no longer this worker's (reclaimed); left alone",
                    job.jobId(), deferral.reason());
            count(claimed, job.agent(), WorkerMetrics.Outcome.LOST);
            return;
        }
        Instant due = scheduled.get();
        count(claimed, job.agent(), WorkerMetrics.Outcome.DEFERRED);
        live.jobRetrying(job.tenant(), job.taskId(), job.agent(), deferral.next().attempt(), due);
        events.publish("job.rate_limited", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "reason", deferral.reason(), "due", due.toString(), "attempt", Integer.toString(job.attempt()),
                "rate_limit_retries", Integer.toString(deferral.next().rateLimitRetries())));
        LOG.info("Job {} deferred ({}) until {}; not a failed attempt", job.jobId(), deferral.reason(), due);
    }

    private void stopped(ClaimedJob claimed, JobMessage job, JobControl control, JobControl.StopReason reason) {
        switch (reason) {
            case CANCELLED -> {
                AgentConfig agent = catalog.require(job.agent());
                finish(claimed, job, control, new Outcome(cancelledResult(job, agent, "cancelled while running; its process tree was killed",
                        "kage/" + job.taskId() + "/" + job.agent(), control.charged()), List.of()));
            }
            case SHUTDOWN -> {
                if (claimed.redelivered() && !control.isOutcomeChecked()) {
                    // Delivered again and stopped before Postgres said whether an earlier delivery finished it: a new
                    // entry would run it unchecked. Left pending, a reclaim delivers it again, checked.
                    LOG.info("Job {} stopped by shutdown before its outcome check; its entry stays pending", job.jobId());
                    count(claimed, job.agent(), WorkerMetrics.Outcome.LOST);
                    return;
                }
                if (control.finishing()) {
                    // Its agent was done: the outcome is recorded (or in the outbox). Handed back, the job would run
                    // again (a new entry skips the check for an existing outcome); pending, a reclaim acknowledges it.
                    LOG.info("Job {} stopped by shutdown while recording its outcome; its entry stays pending", job.jobId());
                    count(claimed, job.agent(), WorkerMetrics.Outcome.LOST);
                    return;
                }
                boolean handedBack = queue.handBack(claimed, worker.workerId());
                LOG.info("Job {} stopped by shutdown; {}", job.jobId(),
                        handedBack ? "handed back to the queue for another worker" : "no longer ours, left alone");
                count(claimed, job.agent(), handedBack ? WorkerMetrics.Outcome.HANDED_BACK : WorkerMetrics.Outcome.LOST);
                if (handedBack) {
                    live.jobRetrying(job.tenant(), job.taskId(), job.agent(), job.attempt(), clock.instant());
                    events.publish("job.handed_back", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                            "worker", worker.workerId()));
                }
            }
            case LOST -> {
                LOG.warn("Job {} stopped here and left alone: its entry is another worker's now, or soon may be (reclaimed, "
                        + "lost by Redis, or this worker's heartbeat could not reach Redis)", job.jobId());
                count(claimed, job.agent(), WorkerMetrics.Outcome.LOST);
            }
        }
    }

    /**
     * Whether the attempt of a job delivered again has its outcome already (an earlier delivery finished it, and only its
     * acknowledgement was lost), in Postgres or in the agent's outbox (kept there while Postgres was away). While
     * Postgres cannot say, waits and asks again: running it on a guess could run a
     * finished attempt a second time (charged twice, its branch rewritten). The entry stays this worker's meanwhile (the
     * heartbeat refreshes it); a stop (shutdown, cancel) interrupts the wait.
     */
    private boolean alreadyRecorded(JobMessage job, JobControl control) throws InterruptedException {
        return untilPostgresAnswers(job, control, "whether it finished before", () -> recorded(job));
    }

    /**
     * What Postgres says, asked again every {@link #OUTCOME_CHECK_RETRY} while it cannot answer (a guess could run a
     * job twice, or a cancelled one); a stop (shutdown, cancel) interrupts the wait. Waiting starts nothing: the job
     * leaves its start lane meanwhile.
     */
    private <T> T untilPostgresAnswers(JobMessage job, JobControl control, String question,
                                       java.util.function.Supplier<T> ask) throws InterruptedException {
        boolean told = false;
        while (true) {
            if (control.reason() != null) {
                throw new InterruptedException("stopped while waiting for Postgres: " + control.reason());
            }
            try {
                return ask.get();
            } catch (StoreException e) {
                control.leaveStartLane();
                if (!told) {
                    LOG.warn("Job {} attempt {}: Postgres cannot say {} ({}); waiting for Postgres rather than guessing",
                            job.jobId(), job.attempt(), question, e.getMessage());
                    told = true;
                }
                // A backoff, not a poll of something that will signal: Postgres gives no notice when it is back.
                Thread.sleep(OUTCOME_CHECK_RETRY.toMillis());
            }
        }
    }

    /**
     * The agent has exited by itself: from here no stop applies. A stop that came after the exit and before this (a
     * cancel, a lost lease) left its interrupt behind; cleared, so that settling, committing and recording are not cut
     * short by it and the run is recorded as it ended, not as stopped and free.
     */
    private static void agentExited(JobControl control) {
        control.agentExited();
        Thread.interrupted();
    }

    /** How long a run whose agent exited waits for Redis to settle its usage before it gives up (the entry stays pending). */
    static final Duration SETTLE_PATIENCE = Duration.ofMinutes(5);

    /**
     * {@code call} (an idempotent Redis step after the agent exited: settling its usage), asked again every second while
     * Redis cannot answer (a failover, a restart), for up to {@link #SETTLE_PATIENCE}. Giving up at once threw a finished,
     * paid-for run away: its worktree went, and the entry ran again elsewhere. Nothing stops a job whose agent exited,
     * so the wait is not interrupted; a refusal Redis gives for the command itself (a script error) is not waited out.
     */
    private <T> T untilRedisAnswers(JobMessage job, String what, java.util.function.Supplier<T> call, Runnable onRetry) {
        long deadline = System.nanoTime() + SETTLE_PATIENCE.toNanos();
        boolean told = false;
        while (true) {
            try {
                return call.get();
            } catch (RedisException e) {
                if (!dev.kage.redis.RedisErrors.isTransient(e) || System.nanoTime() - deadline > 0) {
                    throw e;
                }
                if (!told) {
                    LOG.warn("Job {}: Redis cannot {} now ({}); asking again every second for up to {} min", job.jobId(), what,
                            e.getMessage(), SETTLE_PATIENCE.toMinutes());
                    told = true;
                }
                onRetry.run();
                try {
                    // A backoff, not a poll of something that signals: Redis gives no notice when it answers again.
                    Thread.sleep(1_000);
                } catch (InterruptedException interrupted) {
                    Thread.currentThread().interrupt();
                    throw e;
                }
            }
        }
    }

    /**
     * Whether the job's attempt has its outcome, in Postgres or in the agent's outbox. The outbox is read only once
     * Postgres answers (while it cannot, the outbox grows, and reading it all every retry would load Redis for
     * nothing), and Postgres again after it: a flush writes Postgres before it takes the entry out.
     *
     * @throws StoreException while Postgres cannot say
     */
    private boolean recorded(JobMessage job) {
        return store.hasOutcome(job.jobId(), job.attempt()) || outcomes.spooled(job.agent(), job.jobId(), job.attempt())
                || store.hasOutcome(job.jobId(), job.attempt());
    }

    /** How long the job has waited since it first entered its stream (a hand-back keeps the first time). */
    private Duration waited(ClaimedJob claimed) {
        long since = claimed.queuedSinceMillis();
        return since <= 0 ? Duration.ZERO : Duration.ofMillis(Math.max(0, clock.millis() - since));
    }

    /** How long a job delivered again waits before asking Postgres again whether its attempt finished. */
    static final Duration OUTCOME_CHECK_RETRY = Duration.ofSeconds(2);

    /** @param charged what the run was charged before it was stopped (its row says so, as the budgets count it); null: nothing */
    private ResultRecord cancelledResult(JobMessage job, AgentConfig agent, String summary, String branch, Usage charged) {
        Usage usage = charged != null ? charged : new Usage(0, 0, 0, 0, BigDecimal.ZERO, Usage.UsageSource.AGENT);
        return new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.CANCELLED, summary,
                usage.inputTokens(), usage.outputTokens(), usage.cacheReadTokens(), usage.cacheWriteTokens(),
                usage.costUsd().setScale(6, java.math.RoundingMode.UP), usage.source().wireName(), agent.model(), 0, null, branch,
                null, null, worker.workerId(), job.attempt(), null);
    }

    private ResultRecord noopResult(JobMessage job, AgentConfig agent) {
        return new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.COMPLETED, null, 0, 0, 0, 0,
                BigDecimal.ZERO.setScale(6), Usage.UsageSource.AGENT.wireName(), agent.model(), 0, null, null, null, null,
                worker.workerId(), job.attempt(), null);
    }

    /**
     * The budget hold of one run. One hold per delivery: a handed-back or retried job holds afresh, and a reclaimed one
     * (same entry) by another worker replaces the dead worker's hold. Each run holds under an id of its own (this
     * process, a count of its runs): an entry this worker takes back from itself (an error left it pending after its
     * run was settled) runs again, and must hold again, not find the earlier run's settled hold and run uncharged. A
     * command Lettuce replays within the run has the run's id and changes nothing.
     */
    static HoldRequest holdRequest(KageSettings settings, String workerId, JobMessage job, AgentConfig agent, String entryId,
                                   long promptTokens, long outputTokens) {
        return new HoldRequest(job.tenant(), job.taskId(), job.agent(), job.jobId() + "#" + job.attempt() + "#" + entryId,
                workerId + "~" + PROCESS + "~" + RUNS.incrementAndGet(), promptTokens + outputTokens,
                agent.prices().estimateMicros(promptTokens, outputTokens), job.tokenLimit(), 0, agent.budget(),
                Duration.ofSeconds(job.timeoutSeconds()).plus(settings.rateLimit().maxSlotWait())
                        .plus(settings.budget().holdGrace()));
    }

    private Outcome execute(JobMessage job, AgentConfig agent, ClaimedJob claimed, JobControl control) throws InterruptedException {
        String entryId = claimed.entryId();
        // An HTTP agent's prompt is wrapped in the provider's chat format, which the provider counts too.
        long promptTokens = TokenCounter.count(agent.encoding(), job.description())
                + (agent.type().isHttp() ? CHAT_FORMAT_TOKENS : 0);
        // An HTTP agent's answer is capped by max_tokens: holding the cap means it can never pass its hold.
        long outputTokens = agent.type().isHttp() ? agent.endpoint().maxTokens() : agent.estimatedOutputTokens();
        long estimate = promptTokens + outputTokens;
        HoldRequest request = holdRequest(settings, worker.workerId(), job, agent, entryId, promptTokens, outputTokens);
        Hold hold = budget.reserve(request);
        if (hold.superseded() > 0) {
            LOG.info("Job {}: released the budget hold of the worker it was reclaimed from", job.jobId());
        }
        if (!hold.accepted()) {
            return refused(job, agent, hold);
        }

        if (agent.type().isHttp()) {
            return executeHttp(job, agent, hold, promptTokens, estimate, control);
        }
        long held = System.nanoTime();
        String branch = "kage/" + job.taskId() + "/" + job.agent();
        String repo = job.repo().isBlank() ? worker.defaultRepo() : job.repo();
        if (repo.isBlank()) {
            budget.release(hold);
            ErrorRecord error = error(job, "WorktreeError", "the task names no repo and this worker has no KAGE_DEFAULT_REPO: "
                    + "send repo with the task, or set KAGE_DEFAULT_REPO on the workers", Map.of("base_branch", job.baseBranch()),
                    false);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null), List.of(error));
        }
        if (insideWorkRoot(repo, worker.workDir())) {
            budget.release(hold);
            ErrorRecord error = error(job, "WorktreeError", "repo is inside the workers' work directory (their caches and "
                    + "other tasks' worktrees): refused", Map.of("base_branch", job.baseBranch()), false);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null), List.of(error));
        }
        Worktree worktree;
        try {
            worktree = worktrees.create(repo, job.baseBranch(), branch, job.taskId() + "-" + job.agent(), queuedAtLocalMillis(claimed));
        } catch (GitException e) {
            budget.release(hold);
            // The repository may be an operator's URL with its credentials in it (a GitException's message is masked).
            ErrorRecord error = error(job, "WorktreeError", e.getMessage(),
                    Map.of("repo", UrlCredentials.mask(repo), "base_branch", job.baseBranch()), e.retryable());
            return new Outcome(failedResult(job, agent, e.getMessage(), null), List.of(error));
        } catch (InterruptedException | RuntimeException e) {
            Hold given = hold;
            whileStopping(() -> budget.release(given));
            throw e;
        }
        try {
            // The worktree may have waited (MAX_ACTIVE_WORKTREES): the hold lives from now as long as the run may.
            if (!budget.renew(hold)) {
                hold = budget.reserve(request);
                if (!hold.accepted()) {
                    return refused(job, agent, hold);
                }
            }
            return runAgent(job, agent, worktree, hold, promptTokens, estimate, control,
                    new long[] {claimed.claimedAtNanos(), held, System.nanoTime()});
        } finally {
            try {
                worktrees.remove(worktree);
            } catch (GitException e) {
                LOG.warn("Could not remove worktree {}: {}", worktree.path(), e.getMessage());
            }
        }
    }

    /** @param stages {@link System#nanoTime()} of the claim, the budget hold and the worktree being ready */
    private Outcome runAgent(JobMessage job, AgentConfig agent, Worktree worktree, Hold hold, long promptTokens, long estimate,
                             JobControl control,
                             long[] stages) throws InterruptedException {
        Map<String, String> env = agentEnvironment(job, agent);
        Redactor redactor = redactor(agent);
        List<String> argv = agent.render(job.description(), job.taskId(), worktree.path());
        Permit permit;
        try {
            permit = takePermit(job, agent, estimate, control);
        } catch (InterruptedException e) {
            whileStopping(() -> budget.release(hold));
            throw e;
        }
        if (permit.deferral() != null) {
            budget.release(hold);
            return new Outcome(null, List.of(), permit.deferral());
        }
        LiveBudget live = new LiveBudget(job, agent, hold, promptTokens);
        java.util.concurrent.atomic.AtomicBoolean processStarted = new java.util.concurrent.atomic.AtomicBoolean();
        ProcessOutcome process;
        try {
            process = processes.run(argv, worktree.path(), env, Duration.ofSeconds(job.timeoutSeconds()), () -> {
                processStarted.set(true);
                rateLimiter.markSent(agent.limits().group(), job.jobId(), permit.grant());
                started(job, stages, worktree.ready());
                // After the start is timed: the next job claimed into this lane is claimed after this one started.
                control.leaveStartLane();
            }, live);
        } catch (IOException e) {
            budget.release(hold);
            // The process never started: its call never left, so its permit goes back.
            rateLimiter.release(agent.limits().group(), job.jobId(), permit.grant());
            ErrorRecord error = error(job, "AgentStartError", "cannot start " + argv.getFirst() + ": " + e.getMessage(),
                    Map.of("program", argv.getFirst()), false);
            return new Outcome(failedResult(job, agent, error.errorMessage(), worktree), List.of(error));
        } catch (InterruptedException e) {
            if (!processStarted.get()) {
                // Stopped while its start waited for the spawner: nothing ran, nothing was sent. The tenant is not
                // charged the prompt, and the permit goes back (held, it kept the group a call short for a window).
                whileStopping(() -> budget.release(hold));
                whileStopping(() -> rateLimiter.release(agent.limits().group(), job.jobId(), permit.grant()));
                throw e;
            }
            // Stopping: what the agent printed was spent; the entry stays pending and runs again elsewhere.
            long usdMicros = agent.prices().estimateMicros(promptTokens, live.outputTokens());
            whileStopping(() -> budget.settle(hold, live.counted(), usdMicros));
            metrics.usage(job.agent(), job.tenant(), promptTokens, live.outputTokens(), 0, 0, PeriodLimits.usd(usdMicros));
            // A cancelled run's row says what it was charged, as the budgets do.
            control.charged(new Usage(promptTokens, live.outputTokens(), 0, 0, PeriodLimits.usd(usdMicros),
                    Usage.UsageSource.ESTIMATE));
            throw e;
        }
        agentExited(control);

        AgentReport report = OutputParser.parse(agent, job.description(), process.stdout(), process.stdoutTail(), process.stderr());
        Usage usage = live.atLeastCounted(report.usage());
        List<ErrorRecord> errors = new ArrayList<>();
        // A run stopped for its budget gets one row saying so, not a second one for the overrun it was stopped at.
        settle(job, hold, usage, process.stopped() ? new ArrayList<>() : errors);
        if (process.stopped()) {
            ErrorRecord stop = live.stopError();
            metrics.budgetViolation(live.stoppedAt().kind().wireName(), "stopped");
            errors.add(stop);
        }

        JobStatus status = JobStatus.COMPLETED;
        String summary = redactor.redact(report.result());
        boolean failed = process.timedOut() || process.stopped() || process.exitCode() != 0 || report.isError();
        String signalText = process.stdoutTail() + "\n" + process.stderr();
        boolean pushedBack = failed && !process.stopped() && !process.timedOut()
                && agent.limits().signalled(process.exitCode(), signalText);
        if (!pushedBack) {
            // The first call after a 429's pause ran without a rate-limit signal: the others need not wait for it any longer.
            rateLimiter.answered(agent.limits().group(), permit.grant());
        }
        if (process.stopped()) {
            status = JobStatus.FAILED;
        } else if (pushedBack) {
            Optional<Outcome> deferred = rateLimited(job, agent, process.exitCode(), tail(redactor.redact(signalText), 2_000),
                    AgentLimits.retryAfter(signalText), errors);
            if (deferred.isPresent()) {
                return deferred.get();
            }
            status = JobStatus.FAILED;
        } else if (process.timedOut()) {
            status = JobStatus.FAILED;
            errors.add(error(job, "TimeoutError", "Agent " + job.agent() + " passed its timeout of " + job.timeoutSeconds()
                    + "s and was killed", Map.of("timeout", job.timeoutSeconds()), agent.retry().retryable(0, true)));
        } else if (process.exitCode() != 0 || report.isError()) {
            status = JobStatus.FAILED;
            String stderr = tail(redactor.redact(process.stderr()), 2_000);
            boolean crashed = process.exitCode() >= 128;
            errors.add(error(job, crashed ? "AgentCrashError" : "AgentError", "Agent " + job.agent() + " exited with code "
                    + process.exitCode() + (crashed ? " (killed by signal " + (process.exitCode() - 128) + ")" : "")
                    + (report.isError() ? " and reported an error" : ""), Map.of("exit_code", process.exitCode(),
                    "stderr_tail", stderr, "result", truncate(summary == null ? "" : summary, 2_000)),
                    agent.retry().retryable(process.exitCode(), false)));
        }

        String commitSha = null;
        String diffStat = null;
        String patch = null;
        try {
            WorktreeManager.Commit commit = worktrees.commit(worktree, "kage: " + job.agent() + " for task " + job.taskId());
            commitSha = commit.sha();
            diffStat = commit.diffStat();
            patch = commit.patch() == null ? null : redactor.redact(commit.patch());
            if (commit.stray() != null) {
                errors.add(error(job, "GitError", "Agent " + job.agent() + ": " + commit.stray(), Map.of("branch", worktree.branch()),
                        false));
            }
            if (worker.pushBranches()) {
                worktrees.push(worktree);
            }
        } catch (GitException e) {
            errors.add(error(job, "GitError", "Could not commit or push " + worktree.branch() + ": " + redactor.redact(e.getMessage()),
                    Map.of("branch", worktree.branch()), e.retryable()));
        }

        ResultRecord result = new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), status,
                truncate(summary, SUMMARY_CHARS), usage.inputTokens(), usage.outputTokens(), usage.cacheReadTokens(),
                usage.cacheWriteTokens(), usage.costUsd(), usage.source().wireName(), agent.model(),
                process.duration().toMillis(), process.timedOut() || process.stopped() ? null : process.exitCode(), worktree.branch(), commitSha,
                diffStat, worker.workerId(), job.attempt(), null, patch);
        return new Outcome(result, errors);
    }

    /**
     * Replaces the hold with what the run used, in every pool. A warning event and log line the first time a pool
     * passes {@code TOKEN_WARNING_THRESHOLD} in its period; a violation row in the seed's shape when the task's
     * pool is passed (each settlement that leaves it passed, as the seed logs), and once per period when a
     * tenant's or an agent's pool is.
     */
    private void settle(JobMessage job, Hold hold, Usage usage, List<ErrorRecord> errors) {
        boolean[] retried = {false};
        Settlement settlement = untilRedisAnswers(job, "settle its usage",
                () -> budget.settle(hold, usage.totalTokens(), PeriodLimits.micros(usage.costUsd())), () -> retried[0] = true);
        metrics.usage(job.agent(), job.tenant(), usage.inputTokens(), usage.outputTokens(), usage.cacheReadTokens(),
                usage.cacheWriteTokens(), usage.costUsd());
        for (PoolSettlement pool : settlement.pools()) {
            if (pool.warningNow() || pool.usdWarningNow()) {
                metrics.budgetWarning(pool.pool().kind().wireName());
                String what = pool.warningNow() ? pool.used() + " of " + pool.limit() + " tokens (" + pool.percentUsed() + "%)"
                        : "$" + PeriodLimits.usd(pool.usdUsedMicros()) + " of $" + PeriodLimits.usd(pool.usdLimitMicros());
                LOG.warn("Token budget warning: {} {} has used {}", pool.pool().describe(),
                        pool.pool().kind() == PoolKind.TASK ? job.taskId() : "", what);
                Map<String, String> event = new HashMap<>(Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                        "pool", pool.pool().describe(), "tokens_used", Long.toString(pool.used()),
                        "token_limit", Long.toString(pool.limit())));
                if (pool.usdWarningNow()) {
                    event.put("usd_used", PeriodLimits.usd(pool.usdUsedMicros()).toPlainString());
                    event.put("usd_limit", PeriodLimits.usd(pool.usdLimitMicros()).toPlainString());
                }
                try {
                    events.publish("budget.warning", event);
                } catch (RedisException e) {
                    // The warning is logged above; failing the settled run for its event would run the agent again.
                    LOG.warn("Event budget.warning of job {} not published: {}", job.jobId(), e.getMessage());
                }
            }
        }
        // A settle that says "settled before" after a retry was this run's own first try, whose answer was lost (the hold
        // id is this run's alone): the task's violation row is still due, read from the pool as it stands. (The other
        // pools' "passed now" flags are only in the lost answer: their once-a-period rows are not written then.)
        if (!settlement.firstTime() && !retried[0]) {
            return;
        }
        PoolSettlement task = settlement.task();
        if (task.exceeded()) {
            ErrorRecord violation = budgetError(job, task.used(), task.limit(), task.used(), task.warningIssued());
            metrics.budgetViolation(PoolKind.TASK.wireName(), "recorded");
            LOG.warn("Budget violation (BUDGET_MODE={}): {}", settings.budgetMode().name().toLowerCase(), violation.errorMessage());
            errors.add(violation);
        }
        for (PoolSettlement pool : settlement.pools().subList(1, settlement.pools().size())) {
            if (pool.exceededNow() || pool.usdExceededNow()) {
                boolean usd = !pool.exceededNow();
                ErrorRecord violation = poolError(job, pool.pool(), usd, usd ? pool.usdUsedMicros() : pool.used(),
                        usd ? pool.usdLimitMicros() : pool.limit(), usd ? pool.usdWarningIssued() : pool.warningIssued(), false);
                metrics.budgetViolation(pool.pool().kind().wireName(), "recorded");
                LOG.warn("Budget violation (BUDGET_MODE={}): {}", settings.budgetMode().name().toLowerCase(), violation.errorMessage());
                errors.add(violation);
            }
        }
    }

    /** A job whose hold was refused: not started, said in a log line, a {@code budget.refused} event and its row. */
    private Outcome refused(JobMessage job, AgentConfig agent, Hold hold) {
        ErrorRecord error = refusalError(job, hold.refusal());
        metrics.budgetViolation(hold.refusal().pool().kind().wireName(), "refused");
        LOG.warn("Job {} not started: {}", job.jobId(), error.errorMessage());
        events.publish("budget.refused", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "pool", hold.refusal().pool().describe(), "message", error.errorMessage()));
        return new Outcome(failedResult(job, agent, "not started: " + error.errorMessage(), null), List.of(error));
    }

    /** The row of a job that could not reserve: the seed's row for the task's pool, its like for the others. */
    private ErrorRecord refusalError(JobMessage job, Refusal refusal) {
        if (refusal.pool().kind() == PoolKind.TASK && !refusal.usd()) {
            return budgetError(job, refusal.wouldUse(), refusal.limit(), refusal.used(), false);
        }
        return poolError(job, refusal.pool(), refusal.usd(), refusal.wouldUse(), refusal.limit(), false, true);
    }

    /**
     * A {@code BudgetExceededError} row for a tenant's or an agent's pool (or a task's dollar limit): {@code error_details}
     * has {@code cli_name}, the pool, {@code pool_used}, {@code pool_limit} and {@code usage_stats} ({@link #poolDetails}).
     */
    private ErrorRecord poolError(JobMessage job, BudgetLedger.Pool pool, boolean usd, long used, long limit,
                                  boolean warningIssued, boolean refused) {
        Map<String, Object> details = poolDetails(job, pool, usd, used, limit, warningIssued);
        details.put("refused", refused);
        String owner = switch (pool.kind()) {
            case TASK -> "Task";
            case TENANT -> "Tenant " + pool.owner();
            case AGENT -> "Agent " + pool.owner();
        };
        String period = pool.period() == null ? "" : " for " + pool.period().replace(':', ' ');
        // A run that asks for no dollars (an agent without prices) is refused once the settled dollars reached the limit.
        String message = usd && used <= limit
                ? owner + " has spent its USD budget" + period + ": $" + PeriodLimits.usd(used).toPlainString() + " of $"
                        + PeriodLimits.usd(limit).toPlainString()
                : usd
                ? owner + " would exceed its USD budget" + period + ": $" + PeriodLimits.usd(used).toPlainString() + " > $"
                        + PeriodLimits.usd(limit).toPlainString()
                : owner + " would exceed its token budget" + period + ": " + used + " > " + limit;
        return new ErrorRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), "BudgetExceededError", message,
                json(details), false, null, errorKey(job, "BudgetExceededError:" + pool.kind().wireName()
                        + (pool.period() == null ? "" : ":" + pool.period()) + (usd ? ":usd" : "")));
    }

    /**
     * Counts an agent's output tokens as it streams (jtokkit, the agent's encoding) and keeps its hold ahead of
     * them: when the count passes what is held, the hold grows from the pools ({@link BudgetLedger#topUp}); in
     * enforce mode a pool with no room left stops the agent, within the chunk that passed it. In log mode it only
     * counts. The count is what the run used when the agent reports nothing better (and when it is stopped).
     * Used by one drain thread, read by the job's thread after the process has ended.
     */
    private final class LiveBudget implements dev.kage.worker.process.OutputWatcher {
        private final JobMessage job;
        private final AgentConfig agent;
        private final Hold hold;
        private final long promptTokens;
        private final boolean enforce = settings.budgetMode() == BudgetMode.ENFORCE;
        private volatile long output;
        private volatile long held;
        private volatile long heldUsd;
        private volatile BudgetLedger.TopUp refusal;
        private volatile String failure;
        private volatile boolean stopping;
        private volatile long countedAtStop;

        LiveBudget(JobMessage job, AgentConfig agent, Hold hold, long promptTokens) {
            this.job = job;
            this.agent = agent;
            this.hold = hold;
            this.promptTokens = promptTokens;
            this.held = hold.tokens();
            this.heldUsd = hold.usdMicros();
        }

        @Override
        public boolean onOutput(byte[] chunk, int length) {
            output += TokenCounter.count(agent.encoding(), new String(chunk, 0, length, java.nio.charset.StandardCharsets.UTF_8));
            if (stopping) {
                return false; // counted (it was printed), but no more holds for it
            }
            long need = promptTokens + output - held;
            if (!enforce || need <= 0) {
                return true;
            }
            // Grow ahead by a quarter of the first estimate at least, so a long answer costs few round trips.
            long want = Math.max(need, Math.max(1_024, hold.tokens() / 4));
            // Dollars as the price table has it for the prompt and what is printed (and what the top-up adds ahead).
            long needUsd = Math.max(0, agent.prices().estimateMicros(promptTokens, output) - heldUsd);
            long wantUsd = Math.max(needUsd, agent.prices().estimateMicros(promptTokens, output + (want - need)) - heldUsd);
            try {
                BudgetLedger.TopUp topUp = budget.topUp(hold, need, want, needUsd, wantUsd);
                if (topUp.granted()) {
                    held += topUp.tokens();
                    heldUsd += topUp.usdMicros();
                    return true;
                }
                refusal = topUp;
            } catch (RuntimeException e) {
                // Enforce mode fails closed: tokens that cannot be held are not spent.
                failure = e.getMessage();
            }
            stopping = true;
            countedAtStop = counted();
            LOG.warn("Job {}: budget spent while the agent was printing ({} tokens counted, {} held); stopping it",
                    job.jobId(), countedAtStop, held);
            return false;
        }

        long outputTokens() {
            return output;
        }

        long counted() {
            return promptTokens + output;
        }

        /** The agent's own usage, or the live count when that is more (an agent stopped midway reports nothing). */
        Usage atLeastCounted(Usage reported) {
            if (reported.source() == Usage.UsageSource.AGENT || reported.totalTokens() >= counted()) {
                return reported;
            }
            return new Usage(promptTokens, output, 0, 0, agent.prices().cost(promptTokens, output, 0, 0),
                    Usage.UsageSource.TOKENIZER);
        }

        /** The pool that had no room left when the agent was stopped. */
        BudgetLedger.Pool stoppedAt() {
            return refusal == null || refusal.tightest() == null ? hold.tenantPools().getFirst() : refusal.tightest();
        }

        ErrorRecord stopError() {
            BudgetLedger.Pool pool = stoppedAt();
            // Dollars ran out while tokens had room: the row says so, in micro-USD, with the pool that refused.
            boolean usd = failure == null && refusal != null && refusal.usd();
            // The pool as it is now: an operator may have changed its limit while the agent ran (it applies at once).
            Optional<BudgetLedger.PoolState> state;
            try {
                state = Optional.of(budget.current(pool));
            } catch (RuntimeException e) {
                state = hold.states().stream().filter(p -> p.pool().key().equals(pool.key())).findFirst();
            }
            long limit = usd ? state.map(BudgetLedger.PoolState::usdLimitMicros).orElse(0L)
                    : state.map(BudgetLedger.PoolState::limit).orElse(job.tokenLimit());
            Map<String, Object> details = poolDetails(job, pool, usd, usd ? heldUsd : countedAtStop, limit, true);
            details.put("tokens_held", held);
            if (usd) {
                details.put("usd_micros_held", heldUsd);
            }
            details.put("tokens_printed_until_killed", counted());
            details.put("stopped", true);
            if (failure != null) {
                details.put("redis_error", failure);
            }
            String message = "Agent " + job.agent() + " stopped: " + (failure != null ? "its budget could not be checked ("
                    + failure + ")" : "the " + pool.describe() + (usd ? " dollar" : "") + " budget was spent") + " after "
                    + countedAtStop + " tokens";
            return new ErrorRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), "BudgetExceededError", message,
                    json(details), false, null, errorKey(job, "BudgetExceededError:stopped"));
        }
    }

    /**
     * An HTTP agent: the fleet-wide permit, one request, usage from the reply; its rate-limit headers feed
     * the limiter's adaptive rate and a 429/529 pauses the group like a CLI's 429. No worktree: the agent
     * edits no files.
     *
     * <p><b>What a failed call costs.</b> A call that never left (no connection, the permit refused, stopped before
     * sending) and a call the provider refused before processing it (429, 529, 503 with {@code Retry-After}, any other
     * 4xx) cost nothing: the hold is released. Once the whole request body went out, a failure that brings no usage
     * (the connection dropped, the answer did not come within the timeout, a 5xx, the worker stopping) may have been
     * processed and billed by the provider, so it is charged at its hold: the prompt's tokens as counted (with the
     * chat format's) plus {@code max_tokens}, which the provider's answer can never pass, priced from {@code prices},
     * with {@code usage_source} {@code estimate}. A hard budget may so count more than was billed, never less. A 5xx
     * whose body carries {@code usage} is charged that usage.
     */
    private Outcome executeHttp(JobMessage job, AgentConfig agent, Hold hold, long promptTokens, long estimate,
                                JobControl control)
            throws InterruptedException {
        HttpAgentClient.Reply reply;
        java.util.concurrent.atomic.AtomicBoolean sent = new java.util.concurrent.atomic.AtomicBoolean();
        Decision[] grant = new Decision[1];
        long maxOutput = estimate - promptTokens;
        Usage unanswered = new Usage(promptTokens, maxOutput, 0, 0, agent.prices().cost(promptTokens, maxOutput, 0, 0),
                Usage.UsageSource.ESTIMATE);
        try {
            Permit permit = takePermit(job, agent, estimate, control);
            if (permit.deferral() != null) {
                budget.release(hold);
                return new Outcome(null, List.of(), permit.deferral());
            }
            grant[0] = permit.grant();
            try {
                reply = http.call(agent, job.description(), Duration.ofSeconds(job.timeoutSeconds()), () -> {
                    sent.set(true);
                    rateLimiter.markSent(agent.limits().group(), job.jobId(), permit.grant());
                });
            } catch (IllegalArgumentException | IllegalStateException refused) {
                // The JDK refused to build or send the request (a bad header or URI): only this, not the permit's or
                // the budget's Redis errors, which leave the entry pending as they always did.
                throw new RequestRefused(refused);
            }
            agentExited(control);
        } catch (IOException e) {
            List<ErrorRecord> errors = unansweredCall(job, agent, hold, unanswered, sent.get(), grant[0]);
            // Redacted as a refused request's message is: an operator's base URL may carry credentials or a key.
            Redactor redactor = redactor(agent);
            String baseUrl = redactor.redact(agent.endpoint().baseUrl());
            ErrorRecord error = error(job, "AgentError", "Agent " + job.agent() + " could not reach " + baseUrl
                    + ": " + redactor.redact(String.valueOf(e.getMessage()))
                    + (sent.get() ? " (after the request was sent: charged at its hold)" : ""),
                    Map.of("base_url", baseUrl, "request_sent", sent.get()), true);
            errors.add(0, error);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null, sent.get() ? unanswered : null), errors);
        } catch (InterruptedException e) {
            if (sent.get()) {
                whileStopping(() -> budget.settle(hold, unanswered.totalTokens(), PeriodLimits.micros(unanswered.costUsd())));
                control.charged(unanswered);
            } else {
                whileStopping(() -> budget.release(hold));
                if (grant[0] != null) {
                    // Never sent: its permit goes back, as when the connection fails.
                    whileStopping(() -> rateLimiter.release(agent.limits().group(), job.jobId(), grant[0]));
                }
            }
            throw e;
        } catch (RequestRefused wrapped) {
            RuntimeException e = wrapped.refusal();
            // A request the JDK refused to build or send (a bad header or URI): nothing was sent, so neither the hold
            // nor the permit stays taken, and the job fails at once instead of being redelivered until it is poison.
            // The message may quote a header, so it is redacted with the agent's secrets, its key among them.
            List<ErrorRecord> errors = unansweredCall(job, agent, hold, unanswered, sent.get(), grant[0]);
            String why = redactor(agent).redact(String.valueOf(e.getMessage()));
            String baseUrl = redactor(agent).redact(agent.endpoint().baseUrl());
            ErrorRecord error = error(job, "AgentError", "Agent " + job.agent() + " could not call " + baseUrl
                    + ": " + e.getClass().getSimpleName() + ": " + why, Map.of("base_url", baseUrl), false);
            errors.add(0, error);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null, sent.get() ? unanswered : null), errors);
        }
        Redactor redactor = redactor(agent);
        String group = agent.limits().group();
        if (!reply.rateLimited()) {
            // The first call after a 429's pause was answered: the others need not wait for it any longer.
            rateLimiter.answered(group, grant[0]);
            // On a 429 the pause and the halving come from the 429 itself; its headers would only blur them.
            HttpAgentClient.quota(reply.headers(), HttpAgentClient.serverNow(reply.headers(), Instant.now()))
                    .ifPresent(q -> rateLimiter.observeQuota(group, q.remaining(), q.limit(), q.reset()));
        }
        List<ErrorRecord> errors = new ArrayList<>();
        if (reply.rateLimited()) {
            budget.release(hold);
            Optional<Outcome> deferred = rateLimited(job, agent, reply.status(), tail(redactor.redact(reply.body()), 2_000),
                    HttpAgentClient.retryAfter(reply.headers(), HttpAgentClient.serverNow(reply.headers(), Instant.now())), errors);
            if (deferred.isPresent()) {
                return deferred.get();
            }
            return new Outcome(failedResult(job, agent, "rate limited: HTTP " + reply.status(), null), errors);
        }
        if (reply.timedOut()) {
            // No answer within the timeout: the provider may still be generating it, and bill it.
            settle(job, hold, unanswered, errors);
            ErrorRecord error = error(job, "TimeoutError", "Agent " + job.agent() + " passed its timeout of " + job.timeoutSeconds()
                    + "s", Map.of("timeout", job.timeoutSeconds()), agent.retry().retryable(0, true));
            errors.add(0, error);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null, unanswered), errors);
        }
        if (reply.status() / 100 != 2) {
            Usage charged = null;
            if (reply.status() >= 500) {
                // Refused or failed after it reached the provider: charged what its body says, else at its hold.
                Usage reported = HttpAgentClient.reportedUsage(agent, reply);
                charged = reported != null ? reported : unanswered;
                settle(job, hold, charged, errors);
            } else {
                budget.release(hold);
            }
            ErrorRecord error = error(job, "AgentError", "Agent " + job.agent() + " answered HTTP " + reply.status(),
                    Map.of("status", reply.status(), "body_tail", tail(redactor.redact(reply.body()), 2_000)), reply.status() >= 500);
            errors.add(0, error);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null, charged), errors);
        }
        AgentReport report = HttpAgentClient.report(agent, job.description(), reply);
        Usage usage = report.usage();
        settle(job, hold, usage, errors);
        ResultRecord result = new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.COMPLETED,
                truncate(redactor.redact(report.result()), SUMMARY_CHARS), usage.inputTokens(), usage.outputTokens(),
                usage.cacheReadTokens(), usage.cacheWriteTokens(), usage.costUsd(), usage.source().wireName(), agent.model(),
                reply.duration().toMillis(), null, null, null, null, worker.workerId(), job.attempt(), null);
        return new Outcome(result, errors);
    }

    /**
     * Takes the job's fleet-wide permit, waiting in the slot while the wait is short.
     *
     * @return the grant, or a deferral when the group is cooling down or the wait is longer than
     *         {@code RATE_LIMIT_MAX_SLOT_WAIT_SECONDS}
     */
    private Permit takePermit(JobMessage job, AgentConfig agent, long estimate, JobControl control) throws InterruptedException {
        String group = agent.limits().group();
        Duration maxWait = settings.rateLimit().maxSlotWait();
        long started = System.nanoTime();
        boolean logged = false;
        while (true) {
            Decision decision = rateLimiter.tryAcquire(group, job.jobId(), job.priority(), estimate, true);
            if (decision.granted()) {
                rateLimiter.recordWait(group, Duration.ofNanos(System.nanoTime() - started));
                if (logged) {
                    LOG.info("Rate limit: permit for job {} ({}) after {} ms", job.jobId(), group,
                            Duration.ofNanos(System.nanoTime() - started).toMillis());
                }
                return new Permit(decision, null);
            }
            Duration sleep = decision.sleep();
            Duration waited = Duration.ofNanos(System.nanoTime() - started);
            boolean redisDown = decision.reason() == FleetRateLimiter.Reason.UNAVAILABLE;
            if (decision.reason() == FleetRateLimiter.Reason.COOLDOWN
                    || (!redisDown && waited.plus(decision.retryIn()).compareTo(maxWait) > 0)) {
                rateLimiter.logWait(group, decision, decision.retryIn());
                return new Permit(null, new Deferral(job, decision.retryIn().plus(jitter(decision.spread())),
                        decision.reason().name().toLowerCase()));
            }
            if (!logged) {
                rateLimiter.logWait(group, decision, decision.retryIn());
                logged = true;
            }
            // Waiting for the limiter uses no CPU: another job may start meanwhile.
            control.leaveStartLane();
            // Sleeping in the slot is the point for a short wait (cheaper than a round trip through the delayed set);
            // the limiter says when a permit may be free. Never past the slot wait: then the next answer decides
            // between the permit and the delayed set.
            Duration left = maxWait.minus(waited);
            Thread.sleep(redisDown || sleep.compareTo(left) < 0 ? sleep : left.isNegative() ? Duration.ZERO : left);
        }
    }

    /** The shortest a claim loop waits before it looks at a full limit group again: its looks stay a few per second. */
    static final Duration MIN_CLAIM_LOOK = Duration.ofMillis(100);

    /**
     * How many of {@code wanted} jobs of the agent a claim loop should take now, and when none, how long to wait
     * before it looks again. A job claimed while its limit group can grant nothing can only wait in its slot or go to
     * the delayed set and come back; under a lowered rate or a fleet-wide pause after a 429 a backlog would cycle
     * through Redis (a hot loop). So: none while the group is paused (look again when the pause ends); as many as can
     * get a permit within {@code RATE_LIMIT_MAX_SLOT_WAIT_SECONDS} — the wait a job may spend in its slot — (the rate
     * minus the permits held, plus those released within that wait, minus the callers already waiting); none when no
     * more can (look again when the next permit's release comes within that wait, at least {@link #MIN_CLAIM_LOOK} later). A noop agent takes no
     * permit and is never held back; neither is any agent when Redis does not answer (the permit step decides then).
     * Thread-safe.
     */
    public ClaimGate claimGate(String agent, int wanted) {
        AgentConfig config = catalog.find(agent).orElse(null);
        if (config == null || config.type() == AgentType.NOOP) {
            return new ClaimGate(wanted, Duration.ZERO);
        }
        FleetRateLimiter.Headroom room;
        try {
            room = rateLimiter.headroom(config.limits().group(), settings.rateLimit().maxSlotWait());
        } catch (RuntimeException e) {
            return new ClaimGate(wanted, Duration.ZERO);
        }
        if (room.cooldown().isPositive()) {
            return new ClaimGate(0, room.cooldown());
        }
        if (room.free() > 0) {
            return new ClaimGate((int) Math.min(wanted, room.free()), Duration.ZERO);
        }
        Duration next = room.lookAgain();
        return new ClaimGate(0, next.compareTo(MIN_CLAIM_LOOK) < 0 ? MIN_CLAIM_LOOK : next);
    }

    /**
     * What {@link #claimGate} decided.
     *
     * @param jobs how many jobs to claim now (0 to {@code wanted})
     * @param lookAgainIn when {@code jobs} is 0, how long to wait before looking again
     */
    public record ClaimGate(int jobs, Duration lookAgainIn) {
    }

    /**
     * The agent process exists: how long after this worker claimed the job (budget hold, worktree, permit, spawn),
     * as the {@code kage.job.start} timer and a log line ({@code ops/bench/start-latency.sh} reads it).
     */
    private void started(JobMessage job, long[] stages, boolean readyWorktree) {
        long now = System.nanoTime();
        metrics.started(Duration.ofNanos(now - stages[0]));
        if (LOG.isInfoEnabled()) {
            LOG.info("Job {} agent started {} ms after its claim (budget {} ms, worktree {} ms {}, permit and spawn {} ms)",
                    job.jobId(), ms(now - stages[0]), ms(stages[1] - stages[0]), ms(stages[2] - stages[1]),
                    readyWorktree ? "ready" : "added", ms(now - stages[2]));
        }
    }

    private static String ms(long nanos) {
        return String.format(java.util.Locale.ROOT, "%.2f", nanos / 1e6);
    }

    /** One delivery ended as {@code outcome}: counted, with the time since its claim. */
    private void count(ClaimedJob claimed, String agent, WorkerMetrics.Outcome outcome) {
        metrics.job(agent, outcome, Duration.ofNanos(System.nanoTime() - claimed.claimedAtNanos()));
    }

    /**
     * @param agent the job's agent, or {@code null} for an entry that is not a job: tagged {@code unknown}, since
     *              whatever such an entry names cannot be trusted as a (bounded) tag value
     */
    private void deadLettered(ClaimedJob claimed, String agent) {
        String name = agent != null ? agent : "unknown";
        metrics.deadLetter(name);
        count(claimed, name, WorkerMetrics.Outcome.DEAD_LETTERED);
    }

    /**
     * Runs a budget call made while this thread is being stopped with its interrupt flag cleared for the call: with
     * the flag set, Lettuce's synchronous API sends the command but throws instead of waiting for its answer, so
     * the caller cannot know the outcome (and its exception would replace the stop).
     */
    private static void whileStopping(Runnable call) {
        boolean interrupted = Thread.interrupted();
        try {
            call.run();
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Up to {@code spread} more, so jobs deferred together do not come back together. */
    private static Duration jitter(Duration spread) {
        long ms = Math.max(1, spread.toMillis() / 10);
        return Duration.ofMillis(ThreadLocalRandom.current().nextLong(ms + 1));
    }

    /**
     * The agent says it was rate limited: pause its group for the whole fleet, log a {@code RateLimitError}
     * row, and defer the job as the same attempt; or, when it has no rate-limit retries left, let it fail.
     *
     * @param errors where the job's other rows are (the final failure's row is added there)
     * @return the deferral, or empty when the job fails now
     */
    private Optional<Outcome> rateLimited(JobMessage job, AgentConfig agent, int exitCode, String evidence,
                                          Optional<Duration> retryAfter, List<ErrorRecord> errors) {
        String group = agent.limits().group();
        int seen = job.rateLimitRetries();
        Duration pause = settings.rateLimit().backoff(seen, retryAfter);
        FleetRateLimiter.SlowDown slowDown = rateLimiter.coolDown(group, pause);
        boolean last = seen >= settings.rateLimit().maxRetries();
        Map<String, Object> details = new LinkedHashMap<>();
        details.put("limit_group", group);
        details.put("exit_code", exitCode);
        details.put("rate_limit_retry", seen + 1);
        details.put("max_retries", settings.rateLimit().maxRetries());
        details.put("backoff_ms", pause.toMillis());
        retryAfter.ifPresent(r -> details.put("retry_after_ms", r.toMillis()));
        details.put("effective_rate", slowDown.effective());
        details.put("final", last);
        details.put("output_tail", evidence);
        ErrorRecord row = new ErrorRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), "RateLimitError",
                last ? "Agent " + job.agent() + " was still rate limited after " + seen + " retries; giving up"
                        : "Agent " + job.agent() + " was rate limited; " + group + " paused fleet-wide for " + pause.toMillis()
                        + " ms, retry " + (seen + 1) + " of " + settings.rateLimit().maxRetries(),
                json(merge(job, details)), !last, null, errorKey(job, "RateLimitError#" + seen));
        metrics.rateLimited(job.agent());
        events.publish("agent.rate_limited", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "limit_group", group, "pause_ms", Long.toString(pause.toMillis()), "final", Boolean.toString(last)));
        LOG.warn("Rate limit: {} answered 429 for job {}; {} paused fleet-wide for {} ms ({}/{} retries)", job.agent(),
                job.jobId(), group, pause.toMillis(), seen + 1, settings.rateLimit().maxRetries());
        if (last) {
            errors.add(row);
            return Optional.empty();
        }
        List<ErrorRecord> rows = new ArrayList<>(errors);
        rows.add(row);
        return Optional.of(new Outcome(null, rows, new Deferral(job.withRateLimitRetry(), pause, "rate_limited")));
    }

    private static Map<String, Object> merge(JobMessage job, Map<String, Object> details) {
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("cli_name", job.agent());
        all.put("attempt", job.attempt());
        all.putAll(details);
        return all;
    }

    private Map<String, String> agentEnvironment(JobMessage job, AgentConfig agent) {
        Map<String, String> env = new HashMap<>();
        for (String name : List.of("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")) {
            String value = System.getenv(name);
            if (value != null) {
                env.put(name, value);
            }
        }
        env.putIfAbsent("PATH", "/usr/local/bin:/usr/bin:/bin");
        for (String name : agent.envPassthrough()) {
            String value = System.getenv(name);
            if (value != null) {
                env.put(name, value);
            }
        }
        env.put("KAGE_TASK_ID", job.taskId());
        env.put("KAGE_JOB_ID", job.jobId());
        env.put("KAGE_AGENT", job.agent());
        if (!env.containsKey("GIT_CONFIG_COUNT")) {
            // The agent's own git (a commit it makes) runs no automatic gc or maintenance either: git would detach it,
            // and it would pack the shared clone outside its lock, as the worker's git no longer does (Git#runCapped).
            env.put("GIT_CONFIG_COUNT", "2");
            env.put("GIT_CONFIG_KEY_0", "gc.auto");
            env.put("GIT_CONFIG_VALUE_0", "0");
            env.put("GIT_CONFIG_KEY_1", "maintenance.auto");
            env.put("GIT_CONFIG_VALUE_1", "false");
        }
        return env;
    }

    private ResultRecord failedResult(JobMessage job, AgentConfig agent, String summary, Worktree worktree) {
        return failedResult(job, agent, summary, worktree, null);
    }

    /** @param charged what the budgets were charged for the failed run (null: nothing) */
    private ResultRecord failedResult(JobMessage job, AgentConfig agent, String summary, Worktree worktree, Usage charged) {
        Usage usage = charged != null ? charged : new Usage(0, 0, 0, 0, BigDecimal.ZERO, Usage.UsageSource.AGENT);
        return new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.FAILED,
                truncate(summary, SUMMARY_CHARS), usage.inputTokens(), usage.outputTokens(), usage.cacheReadTokens(),
                usage.cacheWriteTokens(), usage.costUsd().setScale(6, java.math.RoundingMode.HALF_UP), usage.source().wireName(),
                agent.model(), 0, null, worktree == null ? null : worktree.branch(), null, null, worker.workerId(),
                job.attempt(), null);
    }

    /**
     * An HTTP agent's call that got no answer: once sent, the provider may have processed it, so it is charged at its
     * hold; never sent, the hold and the permit go back.
     *
     * @return the rows the charge adds (a budget overrun), to which the caller adds its own
     */
    private List<ErrorRecord> unansweredCall(JobMessage job, AgentConfig agent, Hold hold, Usage unanswered, boolean sent,
                                             Decision grant) {
        List<ErrorRecord> errors = new ArrayList<>();
        if (sent) {
            settle(job, hold, unanswered, errors);
        } else {
            budget.release(hold);
            if (grant != null) {
                rateLimiter.release(agent.limits().group(), job.jobId(), grant);
            }
        }
        return errors;
    }

    /** Masks the agent's secrets (its {@code env} values, its API key among them) and URL credentials. */
    private static Redactor redactor(AgentConfig agent) {
        return new Redactor(agent.envPassthrough().stream().map(System::getenv).toList());
    }

    /** The JDK refused to build or send an HTTP agent's request; carries what it threw. */
    private static final class RequestRefused extends RuntimeException {
        RequestRefused(RuntimeException refusal) {
            super(refusal);
        }

        RuntimeException refusal() {
            return (RuntimeException) getCause();
        }
    }

    /**
     * Whether {@code repo}, a local path or {@code file://} URL, lies in a worker's caches or worktrees on this host
     * ({@code <KAGE_WORK_DIR>/<worker>/repos|worktrees|…}, this worker's or a neighbour's): a task must not make a worker
     * clone its caches or another task's worktree. Symbolic links are followed where the path exists.
     */
    static boolean insideWorkRoot(String repo, Path workDir) {
        String path = repo;
        if (repo.regionMatches(true, 0, "file://", 0, "file://".length())) {
            // As git reads it: the host is ignored (file://localhost/x is /x) and percent-escapes are decoded.
            path = repo.substring("file://".length());
            int slash = path.indexOf('/');
            if (slash < 0) {
                return false;
            }
            path = path.substring(slash);
            try {
                path = java.net.URLDecoder.decode(path.replace("+", "%2B"), java.nio.charset.StandardCharsets.UTF_8);
            } catch (IllegalArgumentException malformed) {
                return true; // git would not read it either; refused rather than judged by its text
            }
        }
        if (!path.startsWith("/")) {
            return false;
        }
        Path root = workDir.toAbsolutePath().normalize().getParent();
        if (root == null) {
            return false;
        }
        Path target = Path.of(path).normalize();
        try {
            root = root.toRealPath();
        } catch (java.io.IOException | RuntimeException e) {
            // not there yet: compared as written
        }
        try {
            target = target.toRealPath();
        } catch (java.io.IOException | RuntimeException e) {
            // not there: git will say so; compared as written
        }
        if (!target.startsWith(root)) {
            return false;
        }
        Path inside = root.relativize(target);
        return inside.getNameCount() >= 2 && WORK_DIR_PARTS.contains(inside.getName(1).toString());
    }

    /** What a worker keeps in its work directory. */
    private static final java.util.Set<String> WORK_DIR_PARTS = java.util.Set.of("repos", "worktrees", "agent-groups");

    /**
     * The details of a row about a pool other than the task's token budget (a tenant's or an agent's pool, or a dollar
     * limit): its figures are {@code pool_used} and {@code pool_limit} in {@code unit} ({@code tokens} or
     * {@code usd_micros}), never the seed's top-level {@code tokens_used} and {@code token_limit}. The seed's dashboard
     * query averages those as {@code ::int} over every {@code BudgetExceededError}: a month's dollars in micro-USD or a
     * tenant's tokens beyond 2^31 made it fail, and smaller ones mixed dollars and other pools into the tasks' average.
     */
    private Map<String, Object> poolDetails(JobMessage job, BudgetLedger.Pool pool, boolean usd, long used, long limit,
                                            boolean warningIssued) {
        if (pool.kind() == PoolKind.TASK && !usd) {
            Map<String, Object> details = seedDetails(job, used, limit, warningIssued);
            details.put("pool", pool.kind().wireName());
            details.put("pool_owner", pool.owner());
            details.put("unit", "tokens");
            return details;
        }
        Map<String, Object> stats = usageStats("used", "remaining", used, limit, warningIssued);
        Map<String, Object> details = new LinkedHashMap<>();
        details.put("cli_name", job.agent());
        details.put("pool", pool.kind().wireName());
        details.put("pool_owner", pool.owner());
        if (pool.period() != null) {
            details.put("period", pool.period());
        }
        details.put("unit", usd ? "usd_micros" : "tokens");
        details.put("pool_used", used);
        details.put("pool_limit", limit);
        details.put("usage_stats", stats);
        details.put("budget_mode", settings.budgetMode().name().toLowerCase());
        return details;
    }

    /**
     * The seed's {@code error_details} of a budget violation: {@code cli_name}, {@code tokens_used}, {@code token_limit},
     * {@code usage_stats} (tokens used and remaining, percent used to one decimal, warning issued), and the
     * {@code budget_mode}; callers add what they know more.
     */
    private Map<String, Object> seedDetails(JobMessage job, long used, long limit, boolean warningIssued) {
        Map<String, Object> stats = usageStats("tokens_used", "tokens_remaining", used, limit, warningIssued);
        Map<String, Object> details = new LinkedHashMap<>();
        details.put("cli_name", job.agent());
        details.put("tokens_used", used);
        details.put("token_limit", limit);
        details.put("usage_stats", stats);
        details.put("budget_mode", settings.budgetMode().name().toLowerCase());
        return details;
    }

    /** A row's {@code usage_stats}: used and remaining (under the names given), percent used to one decimal, warned. */
    private Map<String, Object> usageStats(String usedName, String remainingName, long used, long limit, boolean warningIssued) {
        Map<String, Object> stats = new LinkedHashMap<>();
        stats.put(usedName, used);
        stats.put(remainingName, limit - used);
        stats.put("percent_used", limit == 0 ? 0 : Math.round(1000.0 * used / limit) / 10.0);
        stats.put("warning_issued", warningIssued || used >= settings.tokenWarningThreshold() * limit);
        return stats;
    }

    /** A violation row exactly in the seed's shape. */
    private ErrorRecord budgetError(JobMessage job, long tokensUsed, long limit, long settled, boolean warningIssued) {
        Map<String, Object> details = seedDetails(job, tokensUsed, limit, warningIssued);
        details.put("tokens_settled", settled);
        return new ErrorRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), "BudgetExceededError",
                "Task would exceed token budget: " + tokensUsed + " > " + limit, json(details), false, null,
                errorKey(job, "BudgetExceededError"));
    }

    private ErrorRecord error(JobMessage job, String type, String message, Map<String, ?> details, boolean retryable) {
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("cli_name", job.agent());
        all.put("attempt", job.attempt());
        all.putAll(details);
        return new ErrorRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), type, message, json(all), retryable, null,
                errorKey(job, type));
    }

    private static String errorKey(JobMessage job, String type) {
        return job.jobId() + "#" + job.attempt() + "#" + type;
    }

    private static String json(Map<String, ?> value) {
        try {
            return JSON.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String truncate(String text, int max) {
        if (text == null || text.length() <= max) {
            return text;
        }
        return text.substring(0, max) + "…";
    }

    private static String tail(String text, int max) {
        if (text == null || text.length() <= max) {
            return text;
        }
        return "…" + text.substring(text.length() - max);
    }

    /**
     * What a run came to: a result with its rows, or a deferral (then {@code result} is null and
     * {@code errors} holds rows to log before deferring).
     */
    private record Outcome(ResultRecord result, List<ErrorRecord> errors, Deferral deferral) {
        Outcome(ResultRecord result, List<ErrorRecord> errors) {
            this(result, errors, null);
        }
    }

    /** A permit taken ({@code grant}) or not ({@code deferral}). */
    private record Permit(Decision grant, Deferral deferral) {
    }

    /** Back to the delayed set as {@code next} after {@code delay}: not a failed attempt. */
    private record Deferral(JobMessage next, Duration delay, String reason) {
    }

}
