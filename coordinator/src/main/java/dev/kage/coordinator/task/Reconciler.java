package dev.kage.coordinator.task;

import io.micronaut.scheduling.annotation.Scheduled;
import jakarta.inject.Singleton;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every few seconds, enqueues tasks whose jobs never reached Redis; every 100 ms (and at shutdown), writes the
 * enqueued marks of the tasks submitted since (see {@link TaskService}); and when Redis is a new server process since
 * the last pass (its {@code run_id} changed: it restarted, perhaps losing its last writes), or on this coordinator's
 * first pass, enqueues again the accepted jobs Redis no longer has ({@link TaskService#requeueLost}). Both wait until
 * Redis has been up for {@link dev.kage.queue.JobQueue#LOST_ENTRY_GRACE} (from its {@code uptime_in_seconds} on the first
 * pass, from the pass that saw the new run_id after that), by when each worker has stopped the runs whose entries Redis
 * lost (their second runs never overlap the first). On a new run_id, before that wait, it passes on every recent cancel
 * again ({@link TaskService#passOnRecentCancels}). Scheduled passes never overlap; not meant to be called concurrently.
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
    /** Lost jobs Redis refused to enqueue again (a damaged key of their agent), tried again at each pass. */
    private final List<dev.kage.task.JobMessage> refusedLost = new java.util.ArrayList<>();
    /** The Redis run_id every recent cancel was last passed on to. */
    private volatile String cancelsPassedFor;

    private final dev.kage.store.LimitOverrideStore limitOverrides;
    private final dev.kage.ratelimit.FleetRateLimiter limiter;

    private final java.util.Set<String> configuredGroups;

    public Reconciler(TaskService service, dev.kage.queue.JobQueue queue, dev.kage.store.LimitOverrideStore limitOverrides,
                      dev.kage.ratelimit.FleetRateLimiter limiter, dev.kage.agent.AgentCatalog catalog,
                      dev.kage.config.KageSettings settings, dev.kage.store.TenantBudgetLimitStore budgetLimits,
                      dev.kage.budget.BudgetLedger ledger) {
        this.service = service;
        this.budgetLimits = budgetLimits;
        this.ledger = ledger;
        this.queue = queue;
        this.limitOverrides = limitOverrides;
        this.limiter = limiter;
        this.configuredGroups = java.util.Set.copyOf(catalog.limitGroups(settings.rateLimit()).keySet());
    }

    /**
     * Writes every operator's rate-limit change kept in Postgres back into Redis ({@code limit_overrides}): a Redis that
     * lost its data rebuilt each group from the workers' configuration. Permits already in the window stay counted.
     *
     * @return limits Redis did not hold already
     */
    public int reapplyLimitOverrides() {
        int restored = 0;
        for (String group : limitOverrides.all().keySet()) {
            // A group no agent of this coordinator's file has any more is left alone: nothing asks for its permits.
            // Under the group's lock, its row read again: a change made meanwhile through the API is not undone.
            if (configuredGroups.contains(group) && limitOverrides.changing(group, change -> change.stored()
                    .map(limit -> limiter.restore(group, limit).changed()).orElse(false))) {
                restored++;
            }
        }
        return restored;
    }

    private final dev.kage.store.TenantBudgetLimitStore budgetLimits;
    private final dev.kage.budget.BudgetLedger ledger;

    /**
     * Makes Redis hold every operator's tenant budget limits as Postgres keeps them ({@code tenant_budget_limits}): a
     * Redis that lost its data applied the fleet's defaults (often none) to those tenants, and one restarted from an older
     * snapshot holds older limits. Each under its tenant's lock, the row read again: a change made meanwhile through the
     * API is not undone. A tenant whose limits were reset after such a snapshot (no row) is not seen here.
     *
     * @return tenants whose limits Redis held otherwise
     */
    public int reapplyTenantBudgetLimits() {
        int restored = 0;
        for (String tenant : budgetLimits.all().keySet()) {
            if (budgetLimits.changing(tenant, change -> change.stored()
                    .filter(fields -> !new java.util.TreeMap<>(fields).equals(ledger.tenantLimitFields(tenant)))
                    .map(fields -> {
                        // Exactly the row's fields: a field Redis has and the row does not follows the defaults again.
                        ledger.clearTenantLimits(tenant);
                        ledger.setTenantLimits(tenant, fields);
                        return true;
                    }).orElse(false))) {
                restored++;
            }
        }
        return restored;
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
            dev.kage.queue.JobQueue.ServerProcess redis = queue.server();
            service.passOnPendingCancels();
            if (!redis.runId().equals(cancelsPassedFor)) {
                // First, and at once: a cancel Redis lost would let a worker start a job of a cancelled task meanwhile.
                // A failure here is retried at the next pass and holds nothing else back.
                try {
                    int cancels = service.passOnRecentCancels();
                    int limits = reapplyLimitOverrides();
                    int budgets = reapplyTenantBudgetLimits();
                    cancelsPassedFor = redis.runId();
                    if (cancels > 0 || limits > 0 || budgets > 0) {
                        LOG.info("Redis is a new server process (run_id {}): passed on the {} cancel(s) of the last {} days, "
                                + "the {} rate-limit change(s) and {} tenant(s)' budget limits again", redis.runId(), cancels,
                                dev.kage.task.LiveTaskState.TTL.toDays(), limits, budgets);
                    }
                } catch (RuntimeException e) {
                    LOG.warn("Passing on recent cancels, rate-limit changes and budget limits to Redis failed (retrying at "
                            + "the next pass): {}", e.getMessage());
                }
            }
            if (redis.runId().equals(checkedRunId)) {
                service.reconcile();
                if (!refusedLost.isEmpty()) {
                    service.requeueRefused(refusedLost);
                }
                return;
            }
            if (!redis.runId().equals(newRunId)) {
                newRunId = redis.runId();
                // Counted from when Redis started, as far as this coordinator can tell: on its first pass (it may have
                // started with Redis, on a host that rebooted) from Redis's uptime, else from now.
                long since = checkedRunId == null ? Math.min(redis.uptime().toNanos(), GRACE_NANOS) : 0;
                newRunIdSeenAt = System.nanoTime() - since;
            }
            if (System.nanoTime() - newRunIdSeenAt < GRACE_NANOS) {
                // Redis restarted a moment ago: a job it lost may still run on a worker until that worker's next beat
                // finds its entry gone and stops it. Enqueuing it now, as lost or as never confirmed, could run it twice
                // at once.
                return;
            }
            long started = System.nanoTime();
            service.reconcile();
            refusedLost.clear();
            int requeued = service.requeueLost(refusedLost);
            if (checkedRunId != null) {
                LOG.info("Redis is a new server process (run_id {}); {} accepted job(s) it no longer had were enqueued again",
                        redis.runId(), requeued);
            } else {
                // Operators (and ops/bench/queue.sh, which times the batch submit only after it) read when it is done.
                LOG.info("Start-up check done: every open task's jobs were looked for in Redis (run_id {}) in {} ms; {} "
                        + "missing one(s) were enqueued again", redis.runId(), (System.nanoTime() - started) / 1_000_000, requeued);
            }
            // Those Redis refused (a damaged key) are tried again, alone, at each pass: no full scan every 5 s.
            checkedRunId = redis.runId();
        } catch (RuntimeException e) {
            LOG.warn("Reconciler pass failed (retrying in a few seconds): {}", e.getMessage());
        }
    }

    /** Hourly: what Redis knows of jobs that wait long for a worker must not expire while they wait. */
    @Scheduled(fixedDelay = "1h", initialDelay = "1m")
    void renewWaiting() {
        try {
            int renewed = service.renewWaiting();
            if (renewed > 0) {
                LOG.debug("Renewed {} marker(s) and live state(s) of jobs waiting for a worker for over a day", renewed);
            }
        } catch (RuntimeException e) {
            LOG.warn("Renewing the keys of long-waiting jobs failed (retrying in an hour): {}", e.getMessage());
        }
    }

    private static final long GRACE_NANOS = dev.kage.queue.JobQueue.LOST_ENTRY_GRACE.toNanos();
}
