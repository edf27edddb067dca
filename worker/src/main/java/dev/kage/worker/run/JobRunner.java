package dev.kage.worker.run;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.budget.TokenBudget;
import dev.kage.budget.TokenBudget.Reservation;
import dev.kage.budget.TokenBudget.Settlement;
import dev.kage.config.KageSettings;
import dev.kage.events.EventLog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
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
import dev.kage.worker.process.ProcessOutcome;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.worktree.GitException;
import dev.kage.worker.worktree.Worktree;
import dev.kage.worker.worktree.WorktreeManager;
import java.io.IOException;
import java.math.BigDecimal;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
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
    /** Characters of the agent's answer kept in {@code output_summary}. */
    static final int SUMMARY_CHARS = 4_000;

    private final KageSettings settings;
    private final WorkerSettings worker;
    private final AgentCatalog catalog;
    private final JobQueue queue;
    private final TaskStore store;
    private final LiveTaskState live;
    private final EventLog events;
    private final TokenBudget budget;
    private final FleetRateLimiter rateLimiter;
    private final WorktreeManager worktrees;
    private final ProcessRunner processes;
    private final OutcomeRecorder outcomes;
    private final HttpAgentClient http = new HttpAgentClient();
    private final Clock clock;

    public JobRunner(KageSettings settings, WorkerSettings worker, AgentCatalog catalog, JobQueue queue, TaskStore store,
                     LiveTaskState live, EventLog events, TokenBudget budget, FleetRateLimiter rateLimiter,
                     WorktreeManager worktrees, ProcessRunner processes, OutcomeRecorder outcomes, Clock clock) {
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
        this.clock = clock;
    }

    /**
     * Runs the job to its outcome and acknowledges it; a failed attempt that may be retried is
     * rescheduled instead. When {@code control} stops the job, the entry is handled as the reason says:
     * cancelled (recorded and acknowledged), shutdown (handed back to the queue) or lost (left alone).
     */
    public void run(ClaimedJob claimed, JobControl control) {
        control.bind(Thread.currentThread());
        JobMessage job;
        try {
            job = claimed.job();
        } catch (JobQueue.MalformedJobException e) {
            LOG.error("Dropping a stream entry that is not a job, to the dead letters: {}", e.getMessage());
            queue.deadLetter(claimed, e.getMessage());
            return;
        }
        try {
            runJob(claimed, job, control);
        } catch (InterruptedException | RuntimeException e) {
            JobControl.StopReason reason = control.reason();
            if (reason == null) {
                if (e instanceof RuntimeException runtime) {
                    throw runtime;
                }
                reason = JobControl.StopReason.SHUTDOWN;
            }
            // The interrupt has done its work (the agent is stopped); clear it, or Redis and Postgres calls that
            // record what became of the job would be interrupted too.
            Thread.interrupted();
            stopped(claimed, job, reason);
        } finally {
            Thread.interrupted();
        }
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
            String deadId = queue.deadLetter(claimed, reason);
            LOG.error("Dead-lettered {} as {} (not a job): {}", claimed.key(), deadId, e.getMessage());
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
        String deadId = queue.deadLetter(claimed, reason);
        Map<String, String> event = new HashMap<>(Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "status", JobStatus.FAILED.wireName(), "dead_letter_id", deadId));
        taskStatus.ifPresent(s -> event.put("task_status", s.wireName()));
        events.publish("job.dead_lettered", event);
        LOG.error("Job {} {}; dead letter {}", job.jobId(), reason, deadId);
    }

    private void runJob(ClaimedJob claimed, JobMessage job, JobControl control) throws InterruptedException {
        UUID taskId = UUID.fromString(job.taskId());
        AgentConfig agent = catalog.require(job.agent());
        if (claimed.redelivered() && alreadyRecorded(job)) {
            LOG.info("Job {} attempt {} already has its outcome; acknowledging the re-delivery", job.jobId(), job.attempt());
            queue.ack(claimed);
            return;
        }
        if (live.isCancelled(job.tenant(), job.taskId())) {
            finish(claimed, job, new Outcome(cancelledResult(job, agent, "cancelled before it started", null), List.of()));
            return;
        }
        LOG.info("Job {} (attempt {}) starting on {}", job.jobId(), job.attempt(), worker.workerId());
        live.jobStarted(job.tenant(), job.taskId(), job.agent(), worker.workerId());
        outcomes.started(taskId);
        events.publish("job.started", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "worker", worker.workerId(), "attempt", Integer.toString(job.attempt())));

        if (agent.type() == AgentType.NOOP) {
            // Nothing to run: no permit, reservation, worktree or process; the bookkeeping around it stays.
            finish(claimed, job, new Outcome(noopResult(job, agent), List.of()));
            return;
        }

        Outcome outcome = execute(job, agent, claimed.entryId());
        if (control.reason() != null) {
            throw new InterruptedException("stopped: " + control.reason());
        }
        if (outcome.deferral() != null) {
            defer(claimed, job, outcome);
            return;
        }
        ErrorRecord retryable = outcome.errors().stream().filter(ErrorRecord::retryable).findFirst().orElse(null);
        if (outcome.result().status() == JobStatus.FAILED && retryable != null && job.attempt() < agent.retry().maxAttempts()) {
            retry(claimed, job, outcome, retryable);
            return;
        }
        finish(claimed, job, outcome);
    }

    /** Records the outcome (or keeps it in the outbox while Postgres is down), then acknowledges the entry. */
    private void finish(ClaimedJob claimed, JobMessage job, Outcome outcome) {
        Optional<TaskStatus> taskStatus = outcomes.record(job.agent(), outcome.result(), outcome.errors());
        live.jobFinished(job.tenant(), job.taskId(), job.agent(), outcome.result().status(), taskStatus.orElse(TaskStatus.RUNNING));
        queue.ack(claimed);
        Map<String, String> event = new HashMap<>(Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "status", outcome.result().status().wireName(), "attempt", Integer.toString(job.attempt())));
        taskStatus.ifPresent(s -> event.put("task_status", s.wireName()));
        events.publish("job.finished", event);
        LOG.info("Job {} {}: {} tokens, ${}, {} ms; task {} is {}{}", job.jobId(), outcome.result().status().wireName(),
                outcome.result().totalTokens(), outcome.result().cost(), outcome.result().durationMs(), job.taskId(),
                taskStatus.map(TaskStatus::wireName).orElse("(outcome kept in the outbox)"),
                outcome.errors().isEmpty() ? "" : " (" + outcome.errors().getFirst().errorType() + ": "
                        + outcome.errors().getFirst().errorMessage() + ")");
    }

    private void retry(ClaimedJob claimed, JobMessage job, Outcome outcome, ErrorRecord cause) {
        int next = job.attempt() + 1;
        outcomes.recordErrors(job.agent(), outcome.errors());
        Optional<Instant> scheduled = queue.defer(claimed, job.withAttempt(next),
                settings.queue().retryDelay(next, ThreadLocalRandom.current().nextDouble()), worker.workerId());
        if (scheduled.isEmpty()) {
            LOG.warn("Job {} attempt {} failed, but its entry is no longer this worker's (reclaimed); left alone", job.jobId(),
                    job.attempt());
            return;
        }
        Instant due = scheduled.get();
        live.jobRetrying(job.tenant(), job.taskId(), job.agent(), next, due);
        events.publish("job.retry_scheduled", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "attempt", Integer.toString(next), "due", due.toString(), "error_type", cause.errorType()));
        LOG.info("Job {} attempt {} failed ({}); attempt {} at {}", job.jobId(), job.attempt(), cause.errorType(), next, due);
    }

    /** Back to the delayed set without using an attempt: waiting for a permit, or paused after a 429. */
    private void defer(ClaimedJob claimed, JobMessage job, Outcome outcome) {
        Deferral deferral = outcome.deferral();
        if (!outcome.errors().isEmpty()) {
            outcomes.recordErrors(job.agent(), outcome.errors());
        }
        Optional<Instant> scheduled = queue.defer(claimed, deferral.next(), deferral.delay(), worker.workerId());
        if (scheduled.isEmpty()) {
            LOG.warn("Job {} was to be deferred ({}), but its entry is no longer this worker's (reclaimed); left alone",
                    job.jobId(), deferral.reason());
            return;
        }
        Instant due = scheduled.get();
        live.jobRetrying(job.tenant(), job.taskId(), job.agent(), deferral.next().attempt(), due);
        events.publish("job.rate_limited", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                "reason", deferral.reason(), "due", due.toString(), "attempt", Integer.toString(job.attempt()),
                "rate_limit_retries", Integer.toString(deferral.next().rateLimitRetries())));
        LOG.info("Job {} deferred ({}) until {}; not a failed attempt", job.jobId(), deferral.reason(), due);
    }

    private void stopped(ClaimedJob claimed, JobMessage job, JobControl.StopReason reason) {
        switch (reason) {
            case CANCELLED -> {
                AgentConfig agent = catalog.require(job.agent());
                finish(claimed, job, new Outcome(cancelledResult(job, agent, "cancelled while running; its process tree was killed",
                        "kage/" + job.taskId() + "/" + job.agent()), List.of()));
            }
            case SHUTDOWN -> {
                boolean handedBack = queue.handBack(claimed);
                LOG.info("Job {} stopped by shutdown; {}", job.jobId(),
                        handedBack ? "handed back to the queue for another worker" : "no longer ours, left alone");
                if (handedBack) {
                    live.jobRetrying(job.tenant(), job.taskId(), job.agent(), job.attempt(), clock.instant());
                    events.publish("job.handed_back", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                            "worker", worker.workerId()));
                }
            }
            case LOST -> LOG.warn("Job {} was reclaimed by another worker while running here; stopped it and left it alone",
                    job.jobId());
        }
    }

    private boolean alreadyRecorded(JobMessage job) {
        try {
            return store.hasOutcome(job.jobId(), job.attempt());
        } catch (StoreException e) {
            return false;
        }
    }

    private ResultRecord cancelledResult(JobMessage job, AgentConfig agent, String summary, String branch) {
        return new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.CANCELLED, summary, 0, 0, 0, 0,
                BigDecimal.ZERO.setScale(6), Usage.UsageSource.AGENT.wireName(), agent.model(), 0, null, branch, null, null,
                worker.workerId(), job.attempt(), null);
    }

    private ResultRecord noopResult(JobMessage job, AgentConfig agent) {
        return new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.COMPLETED, null, 0, 0, 0, 0,
                BigDecimal.ZERO.setScale(6), Usage.UsageSource.AGENT.wireName(), agent.model(), 0, null, null, null, null,
                worker.workerId(), job.attempt(), null);
    }

    private Outcome execute(JobMessage job, AgentConfig agent, String entryId) throws InterruptedException {
        // One reservation per delivery: a handed-back or reclaimed job reserves afresh, a replayed command does not.
        String reservationId = job.jobId() + "#" + job.attempt() + "#" + entryId;
        long promptTokens = TokenCounter.count(agent.encoding(), job.description());
        long estimate = promptTokens + agent.estimatedOutputTokens();
        Reservation reservation = budget.reserve(job.tenant(), job.taskId(), reservationId, estimate, job.tokenLimit());
        if (!reservation.accepted()) {
            long wouldUse = reservation.used() + reservation.reserved() + estimate;
            ErrorRecord error = budgetError(job, wouldUse, reservation.limit(), reservation.used(), false);
            LOG.warn("Job {} not started: {}", job.jobId(), error.errorMessage());
            return new Outcome(failedResult(job, agent, "not started: " + error.errorMessage(), null), List.of(error));
        }

        if (agent.type().isHttp()) {
            return executeHttp(job, agent, reservationId, estimate);
        }
        String branch = "kage/" + job.taskId() + "/" + job.agent();
        String repo = job.repo().isBlank() ? worker.defaultRepo() : job.repo();
        Worktree worktree;
        try {
            worktree = worktrees.create(repo, job.baseBranch(), branch, job.taskId() + "-" + job.agent());
        } catch (GitException e) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            ErrorRecord error = error(job, "WorktreeError", e.getMessage(), Map.of("repo", repo, "base_branch", job.baseBranch()),
                    e.retryable());
            return new Outcome(failedResult(job, agent, e.getMessage(), null), List.of(error));
        }
        try {
            return runAgent(job, agent, worktree, reservationId, estimate);
        } finally {
            try {
                worktrees.remove(worktree);
            } catch (GitException e) {
                LOG.warn("Could not remove worktree {}: {}", worktree.path(), e.getMessage());
            }
        }
    }

    private Outcome runAgent(JobMessage job, AgentConfig agent, Worktree worktree, String reservationId, long estimate)
            throws InterruptedException {
        Map<String, String> env = agentEnvironment(job, agent);
        Redactor redactor = new Redactor(agent.envPassthrough().stream().map(System::getenv).toList());
        List<String> argv = agent.render(job.description(), job.taskId(), worktree.path());
        Permit permit;
        try {
            permit = takePermit(job, agent, estimate);
        } catch (InterruptedException e) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            throw e;
        }
        if (permit.deferral() != null) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            return new Outcome(null, List.of(), permit.deferral());
        }
        ProcessOutcome process;
        try {
            process = processes.run(argv, worktree.path(), env, Duration.ofSeconds(job.timeoutSeconds()),
                    () -> rateLimiter.markSent(agent.limits().group(), job.jobId(), permit.grant()));
        } catch (IOException e) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            // The process never started: its call never left, so its permit goes back.
            rateLimiter.release(agent.limits().group(), job.jobId(), permit.grant());
            ErrorRecord error = error(job, "AgentStartError", "cannot start " + argv.getFirst() + ": " + e.getMessage(),
                    Map.of("program", argv.getFirst()), false);
            return new Outcome(failedResult(job, agent, error.errorMessage(), worktree), List.of(error));
        } catch (InterruptedException e) {
            // Stopping: give the reservation back; the entry stays pending and runs again elsewhere.
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            throw e;
        }

        AgentReport report = OutputParser.parse(agent, job.description(), process.stdout(), process.stdoutTail());
        Usage usage = report.usage();
        List<ErrorRecord> errors = new ArrayList<>();
        settle(job, reservationId, usage, errors);

        JobStatus status = JobStatus.COMPLETED;
        String summary = redactor.redact(report.result());
        boolean failed = process.timedOut() || process.exitCode() != 0 || report.isError();
        String signalText = process.stdoutTail() + "\n" + process.stderr();
        if (failed && !process.timedOut() && agent.limits().signalled(process.exitCode(), signalText)) {
            Optional<Outcome> deferred = rateLimited(job, agent, process.exitCode(), redactor.redact(tail(signalText, 2_000)),
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
            String stderr = redactor.redact(tail(process.stderr(), 2_000));
            boolean crashed = process.exitCode() >= 128;
            errors.add(error(job, crashed ? "AgentCrashError" : "AgentError", "Agent " + job.agent() + " exited with code "
                    + process.exitCode() + (crashed ? " (killed by signal " + (process.exitCode() - 128) + ")" : "")
                    + (report.isError() ? " and reported an error" : ""), Map.of("exit_code", process.exitCode(),
                    "stderr_tail", stderr, "result", truncate(summary == null ? "" : summary, 2_000)),
                    agent.retry().retryable(process.exitCode(), false)));
        }

        String commitSha = null;
        String diffStat = null;
        try {
            WorktreeManager.Commit commit = worktrees.commit(worktree, "kage: " + job.agent() + " for task " + job.taskId());
            commitSha = commit.sha();
            diffStat = commit.diffStat();
            if (worker.pushBranches()) {
                worktrees.push(worktree);
            }
        } catch (GitException e) {
            errors.add(error(job, "GitError", "Could not commit or push " + worktree.branch() + ": " + e.getMessage(),
                    Map.of("branch", worktree.branch()), e.retryable()));
        }

        ResultRecord result = new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), status,
                truncate(summary, SUMMARY_CHARS), usage.inputTokens(), usage.outputTokens(), usage.cacheReadTokens(),
                usage.cacheWriteTokens(), usage.costUsd(), usage.source().wireName(), agent.model(),
                process.duration().toMillis(), process.timedOut() ? null : process.exitCode(), worktree.branch(), commitSha,
                diffStat, worker.workerId(), job.attempt(), null);
        return new Outcome(result, errors);
    }

    /** Replaces the reservation with what the run used; a warning event and a violation row as the seed logs them. */
    private void settle(JobMessage job, String reservationId, Usage usage, List<ErrorRecord> errors) {
        Settlement settlement = budget.settle(job.tenant(), job.taskId(), reservationId, usage.totalTokens(), job.tokenLimit());
        if (settlement.warningNow()) {
            LOG.warn("Token budget warning: task {} has used {} of {} tokens ({}%)", job.taskId(), settlement.used(),
                    settlement.limit(), settlement.percentUsed());
            events.publish("budget.warning", Map.of("task_id", job.taskId(), "tenant", job.tenant(), "agent", job.agent(),
                    "tokens_used", Long.toString(settlement.used()), "token_limit", Long.toString(settlement.limit())));
        }
        if (settlement.firstTime() && settlement.exceeded()) {
            ErrorRecord violation = budgetError(job, settlement.used(), settlement.limit(), settlement.used(),
                    settlement.warningIssued());
            LOG.warn("Budget violation (BUDGET_MODE={}): {}", settings.budgetMode().name().toLowerCase(), violation.errorMessage());
            errors.add(violation);
        }
    }

    /**
     * An HTTP agent: the fleet-wide permit, one request, usage from the reply; its rate-limit headers feed
     * the limiter's adaptive rate and a 429/529 pauses the group like a CLI's 429. No worktree: the agent
     * edits no files.
     */
    private Outcome executeHttp(JobMessage job, AgentConfig agent, String reservationId, long estimate)
            throws InterruptedException {
        HttpAgentClient.Reply reply;
        java.util.concurrent.atomic.AtomicBoolean sent = new java.util.concurrent.atomic.AtomicBoolean();
        Decision[] grant = new Decision[1];
        try {
            Permit permit = takePermit(job, agent, estimate);
            if (permit.deferral() != null) {
                budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
                return new Outcome(null, List.of(), permit.deferral());
            }
            grant[0] = permit.grant();
            reply = http.call(agent, job.description(), Duration.ofSeconds(job.timeoutSeconds()), () -> {
                sent.set(true);
                rateLimiter.markSent(agent.limits().group(), job.jobId(), permit.grant());
            });
        } catch (IOException e) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            if (!sent.get() && grant[0] != null) {
                rateLimiter.release(agent.limits().group(), job.jobId(), grant[0]);
            }
            ErrorRecord error = error(job, "AgentError", "Agent " + job.agent() + " could not reach " + agent.endpoint().baseUrl()
                    + ": " + e.getMessage(), Map.of("base_url", agent.endpoint().baseUrl()), true);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null), List.of(error));
        } catch (InterruptedException e) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            throw e;
        }
        Redactor redactor = new Redactor(agent.envPassthrough().stream().map(System::getenv).toList());
        String group = agent.limits().group();
        if (!reply.rateLimited()) {
            // On a 429 the pause and the halving come from the 429 itself; its headers would only blur them.
            HttpAgentClient.quota(reply.headers(), Instant.now())
                    .ifPresent(q -> rateLimiter.observeQuota(group, q.remaining(), q.limit(), q.reset()));
        }
        List<ErrorRecord> errors = new ArrayList<>();
        if (reply.rateLimited()) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            Optional<Outcome> deferred = rateLimited(job, agent, reply.status(), redactor.redact(tail(reply.body(), 2_000)),
                    HttpAgentClient.retryAfter(reply.headers(), Instant.now()), errors);
            if (deferred.isPresent()) {
                return deferred.get();
            }
            return new Outcome(failedResult(job, agent, "rate limited: HTTP " + reply.status(), null), errors);
        }
        if (reply.timedOut()) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            ErrorRecord error = error(job, "TimeoutError", "Agent " + job.agent() + " passed its timeout of " + job.timeoutSeconds()
                    + "s", Map.of("timeout", job.timeoutSeconds()), agent.retry().retryable(0, true));
            return new Outcome(failedResult(job, agent, error.errorMessage(), null), List.of(error));
        }
        if (reply.status() / 100 != 2) {
            budget.settle(job.tenant(), job.taskId(), reservationId, 0, job.tokenLimit());
            ErrorRecord error = error(job, "AgentError", "Agent " + job.agent() + " answered HTTP " + reply.status(),
                    Map.of("status", reply.status(), "body_tail", redactor.redact(tail(reply.body(), 2_000))), reply.status() >= 500);
            return new Outcome(failedResult(job, agent, error.errorMessage(), null), List.of(error));
        }
        AgentReport report = HttpAgentClient.report(agent, job.description(), reply);
        Usage usage = report.usage();
        settle(job, reservationId, usage, errors);
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
    private Permit takePermit(JobMessage job, AgentConfig agent, long estimate) throws InterruptedException {
        String group = agent.limits().group();
        Duration maxWait = settings.rateLimit().maxSlotWait();
        long started = System.nanoTime();
        boolean logged = false;
        while (true) {
            Decision decision = rateLimiter.tryAcquire(group, job.jobId(), job.priority(), estimate, true);
            if (decision.granted()) {
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
            // Sleeping in the slot is the point for a short wait (cheaper than a round trip through the delayed set);
            // the limiter says when a permit may be free. Never past the slot wait: then the next answer decides
            // between the permit and the delayed set.
            Duration left = maxWait.minus(waited);
            Thread.sleep(redisDown || sleep.compareTo(left) < 0 ? sleep : left.isNegative() ? Duration.ZERO : left);
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
        return env;
    }

    private ResultRecord failedResult(JobMessage job, AgentConfig agent, String summary, Worktree worktree) {
        return new ResultRecord(UUID.fromString(job.taskId()), job.jobId(), job.agent(), JobStatus.FAILED,
                truncate(summary, SUMMARY_CHARS), 0, 0, 0, 0, BigDecimal.ZERO.setScale(6), Usage.UsageSource.AGENT.wireName(),
                agent.model(), 0, null, worktree == null ? null : worktree.branch(), null, null, worker.workerId(),
                job.attempt(), null);
    }

    /** A violation row exactly in the seed's shape. */
    private ErrorRecord budgetError(JobMessage job, long tokensUsed, long limit, long settled, boolean warningIssued) {
        Map<String, Object> stats = new LinkedHashMap<>();
        stats.put("tokens_used", tokensUsed);
        stats.put("tokens_remaining", limit - tokensUsed);
        stats.put("percent_used", limit == 0 ? 0 : Math.round(1000.0 * tokensUsed / limit) / 10.0);
        stats.put("warning_issued", warningIssued || tokensUsed >= settings.tokenWarningThreshold() * limit);
        Map<String, Object> details = new LinkedHashMap<>();
        details.put("cli_name", job.agent());
        details.put("tokens_used", tokensUsed);
        details.put("token_limit", limit);
        details.put("usage_stats", stats);
        details.put("budget_mode", settings.budgetMode().name().toLowerCase());
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
