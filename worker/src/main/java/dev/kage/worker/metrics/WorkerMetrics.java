package dev.kage.worker.metrics;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.math.BigDecimal;
import java.time.Duration;
import java.util.function.Supplier;

/**
 * The worker's meters, all on one {@link MeterRegistry} (in the process, the Prometheus registry that
 * {@link MetricsServer} serves). Names are Micrometer's dotted names; the Prometheus names they become are in
 * each method's Javadoc and in the README's Metrics section.
 *
 * <p>Tags are bounded: agent (from the agents file), tenant (from the API keys), outcome, pool kind, limit group,
 * direction. Never a task or job id. Micrometer keeps one meter per name and tag set, so looking one up per job is
 * a map lookup; nothing here is on a per-token path. Thread-safe.
 */
public final class WorkerMetrics {
    private final MeterRegistry registry;
    private final Timer startLatency;

    public WorkerMetrics(MeterRegistry registry) {
        this.registry = registry;
        this.startLatency = Timer.builder("kage.job.start")
                .description("From a worker's claim of a job to its agent process starting")
                .publishPercentiles(0.5, 0.99)
                .register(registry);
    }

    /** Where the meters are, for tests and for meters registered elsewhere (the rate limiter's). */
    public MeterRegistry registry() {
        return registry;
    }

    /**
     * How a delivery of a job ended on this worker: {@code kage_jobs_total{agent,outcome}}, and the time from its
     * claim to that end, {@code kage_job_duration_seconds{agent,outcome}}.
     *
     * @param sinceClaim wall time from the claim to the outcome
     */
    public void job(String agent, Outcome outcome, Duration sinceClaim) {
        Counter.builder("kage.jobs").description("Job deliveries this worker finished, by how they ended")
                .tag("agent", agent).tag("outcome", outcome.wireName()).register(registry).increment();
        Timer.builder("kage.job.duration").description("From a worker's claim of a job to its outcome")
                .tag("agent", agent).tag("outcome", outcome.wireName()).register(registry).record(sinceClaim);
    }

    /** The agent process exists: {@code kage_job_start_seconds}, from the claim (budget hold, worktree, permit, spawn). */
    public void started(Duration sinceClaim) {
        startLatency.record(sinceClaim);
    }

    /**
     * What a run was charged (what its budget was settled with): {@code kage_tokens_total{agent,tenant,direction}}
     * with direction {@code input}, {@code output}, {@code cache_read}, {@code cache_write}, and
     * {@code kage_cost_usd_total{agent,tenant}}.
     *
     * @param usd US dollars; {@code null} counts as none
     */
    public void usage(String agent, String tenant, long input, long output, long cacheRead, long cacheWrite, BigDecimal usd) {
        tokens(agent, tenant, "input", input);
        tokens(agent, tenant, "output", output);
        if (cacheRead > 0) {
            tokens(agent, tenant, "cache_read", cacheRead);
        }
        if (cacheWrite > 0) {
            tokens(agent, tenant, "cache_write", cacheWrite);
        }
        Counter.builder("kage.cost.usd").description("US dollars charged for agent runs")
                .tag("agent", agent).tag("tenant", tenant).register(registry)
                .increment(usd == null ? 0 : usd.doubleValue());
    }

    private void tokens(String agent, String tenant, String direction, long count) {
        Counter.builder("kage.tokens").description("Tokens charged for agent runs")
                .tag("agent", agent).tag("tenant", tenant).tag("direction", direction).register(registry).increment(count);
    }

    /** A pool passed its warning threshold for the first time in its period: {@code kage_budget_warnings_total{pool}}. */
    public void budgetWarning(String poolKind) {
        Counter.builder("kage.budget.warnings").description("Budget pools that passed TOKEN_WARNING_THRESHOLD")
                .tag("pool", poolKind).register(registry).increment();
    }

    /**
     * A {@code BudgetExceededError} row: a pool passed, a job refused its reservation, or an agent stopped while
     * printing: {@code kage_budget_violations_total{pool,action}}.
     *
     * @param action {@code recorded} (the run went on: log mode or settled past the limit), {@code refused}
     *               (the job did not start), {@code stopped} (the agent was stopped)
     */
    public void budgetViolation(String poolKind, String action) {
        Counter.builder("kage.budget.violations").description("Budget violations (BudgetExceededError rows)")
                .tag("pool", poolKind).tag("action", action).register(registry).increment();
    }

    /** The agent reported a rate limit (a 429, overloaded): {@code kage_rate_limited_total{agent}}. */
    public void rateLimited(String agent) {
        Counter.builder("kage.rate.limited").description("Runs the agent reported as rate limited (429)")
                .tag("agent", agent).register(registry).increment();
    }

    /** A failed attempt was scheduled to run again: {@code kage_retries_total{agent}}. */
    public void retry(String agent) {
        Counter.builder("kage.retries").description("Failed attempts scheduled to run again")
                .tag("agent", agent).register(registry).increment();
    }

    /** An entry of a dead worker was taken over: {@code kage_reclaims_total{agent}}. */
    public void reclaim(String agent) {
        Counter.builder("kage.reclaims").description("Entries taken over from workers whose heartbeat lapsed")
                .tag("agent", agent).register(registry).increment();
    }

    /** An entry went to the dead letters: {@code kage_dead_letters_total{agent}}. */
    public void deadLetter(String agent) {
        Counter.builder("kage.dead.letters").description("Entries this worker moved to the dead letters")
                .tag("agent", agent).register(registry).increment();
    }

    /** {@code kage_worktrees_active}: worktrees that exist now, read from {@code count} at each scrape. */
    public void worktreesActive(Supplier<Number> count) {
        Gauge.builder("kage.worktrees.active", count).description("Git worktrees this worker holds now")
                .strongReference(true).register(registry);
    }

    /** {@code kage_jobs_running}: jobs in this worker's slots now, read from {@code count} at each scrape. */
    public void jobsRunning(Supplier<Number> count) {
        Gauge.builder("kage.jobs.running", count).description("Jobs running in this worker's slots")
                .strongReference(true).register(registry);
    }

    /** How one delivery of a job ended on this worker (the {@code outcome} tag). */
    public enum Outcome {
        /** recorded as completed and acknowledged */
        COMPLETED,
        /** recorded as failed (no attempts left, or not retryable) and acknowledged */
        FAILED,
        /** cancelled before or while it ran, recorded and acknowledged */
        CANCELLED,
        /** failed, another attempt scheduled */
        RETRIED,
        /** sent to the delayed set without using an attempt (rate limit wait, 429 pause) */
        DEFERRED,
        /** delivered too often without finishing, or not a job: moved to the dead letters */
        DEAD_LETTERED,
        /** stopped by this worker's shutdown and given back to the queue */
        HANDED_BACK,
        /** reclaimed by another worker while it ran here; left alone */
        LOST,
        /** a re-delivery of an attempt whose outcome was already recorded; acknowledged */
        DUPLICATE,
        /** an unexpected error before the outcome was recorded; left pending for the reclaimer */
        ERROR;

        public String wireName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }
}
