package dev.kage.store;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import org.jdbi.v3.core.Handle;
import org.jdbi.v3.core.HandleCallback;
import org.jdbi.v3.core.JdbiException;
import org.jdbi.v3.core.transaction.TransactionIsolationLevel;

/**
 * The seed document's success metrics for one tenant: budget violation rate, rate-limit failures after
 * retries, cost anomalies. Every figure counts only rows of the tenant's own tasks ({@code tasks.tenant}),
 * over a window of whole days ending at the database's {@code now()} (the clock that stamped the rows).
 * Each report reads one snapshot ({@code REPEATABLE READ}), so its figures agree with each other.
 * Thread-safe.
 *
 * <p>Reads the indexes {@code execution_results (task_id)}, {@code execution_results (created_at, cli_name)},
 * {@code task_errors (task_id)}, {@code task_errors (error_type, occurred_at)} and
 * {@code tasks (tenant, created_at DESC, id DESC)}.
 */
public final class ReportQueries {
    /** Days in the window when the caller names none: the seed's measurement period. */
    public static final int DEFAULT_DAYS = 30;
    /** Longest window, in days. */
    public static final int MAX_DAYS = 366;
    /** Anomalies listed when the caller names no limit. */
    public static final int DEFAULT_ANOMALY_LIMIT = 50;
    /** Most anomalies one answer lists. */
    public static final int MAX_ANOMALY_LIMIT = 500;
    /** The seed's target: fewer than this percentage of tasks exceed their token budget. */
    public static final BigDecimal BUDGET_VIOLATION_TARGET_PCT = new BigDecimal("5");
    /** The seed's target: fewer than this percentage of agent runs fail on rate limits after retries. */
    public static final BigDecimal RATE_LIMIT_FAILURE_TARGET_PCT = new BigDecimal("1");
    /** The seed's anomaly rule: a run costing more than this many times its agent's average. */
    public static final BigDecimal ANOMALY_FACTOR = new BigDecimal("3");

    private static final String WINDOW = """
            SELECT now() AS window_end, now() - make_interval(days => :days) AS window_start
            """;

    // The seed's metric 1, per tenant: tasks with a result in the window, and of those the ones with a
    // BudgetExceededError row (the seed does not window the error rows, so neither does this).
    private static final String BUDGET = """
            WITH windowed AS (
                SELECT DISTINCT r.task_id
                FROM execution_results r
                JOIN tasks t ON t.id = r.task_id
                WHERE t.tenant = :tenant AND r.created_at >= CAST(:from AS timestamptz)
            )
            SELECT
                (SELECT count(*) FROM windowed) AS tasks,
                (SELECT count(*) FROM windowed w
                 WHERE EXISTS (SELECT 1 FROM task_errors e
                               WHERE e.task_id = w.task_id AND e.error_type = 'BudgetExceededError')) AS tasks_with_violations,
                (SELECT count(*) FROM task_errors e JOIN tasks t ON t.id = e.task_id
                 WHERE t.tenant = :tenant AND e.error_type = 'BudgetExceededError'
                   AND e.occurred_at >= CAST(:from AS timestamptz)) AS violations,
                (SELECT count(*) FROM task_errors e JOIN tasks t ON t.id = e.task_id
                 WHERE t.tenant = :tenant AND e.error_type = 'BudgetExceededError'
                   AND e.occurred_at >= CAST(:to AS timestamptz) - interval '24 hours') AS violations_last_24h
            """;

    // The seed's metric 2 ("429_errors / api_calls"): a RateLimitError row with "final": true is a run that
    // gave up after its retries; the other RateLimitError rows are 429s that were retried. Each
    // execution_results row is one agent run.
    private static final String RATE_LIMITS = """
            WITH calls AS (
                SELECT r.cli_name, count(*) AS api_calls
                FROM execution_results r
                JOIN tasks t ON t.id = r.task_id
                WHERE t.tenant = :tenant AND r.created_at >= CAST(:from AS timestamptz)
                GROUP BY r.cli_name
            ), limited AS (
                SELECT coalesce(e.cli_name, e.error_details ->> 'cli_name') AS cli_name,
                       count(*) FILTER (WHERE e.error_details ->> 'final' = 'true') AS failures,
                       count(*) FILTER (WHERE e.error_details ->> 'final' IS DISTINCT FROM 'true') AS retries
                FROM task_errors e
                JOIN tasks t ON t.id = e.task_id
                WHERE t.tenant = :tenant AND e.error_type = 'RateLimitError'
                  AND e.occurred_at >= CAST(:from AS timestamptz)
                GROUP BY 1
            )
            SELECT coalesce(c.cli_name, l.cli_name) AS cli_name,
                   coalesce(c.api_calls, 0) AS api_calls,
                   coalesce(l.failures, 0) AS failures,
                   coalesce(l.retries, 0) AS retries
            FROM calls c
            FULL JOIN limited l ON l.cli_name = c.cli_name
            ORDER BY 1 NULLS LAST
            """;

    // The seed's metric 3, per tenant: like the seed, the average is over all of the agent's runs (not only
    // the window's), and only runs in the window are listed.
    private static final String ANOMALIES = """
            WITH averages AS (
                SELECT r.cli_name, avg(r.cost) AS avg_cost
                FROM execution_results r
                JOIN tasks t ON t.id = r.task_id
                WHERE t.tenant = :tenant
                GROUP BY r.cli_name
            )
            SELECT r.task_id, r.job_id, r.attempt, r.cli_name, r.cost, a.avg_cost, r.created_at,
                   count(*) OVER () AS total
            FROM execution_results r
            JOIN tasks t ON t.id = r.task_id
            JOIN averages a ON a.cli_name = r.cli_name
            WHERE t.tenant = :tenant AND r.created_at >= CAST(:from AS timestamptz)
              AND r.cost > a.avg_cost * :factor
            ORDER BY r.cost DESC, r.id
            LIMIT :limit
            """;

    private final Database database;

    public ReportQueries(Database database) {
        this.database = database;
    }

    /**
     * The seed's metric 1: the share of the tenant's tasks with results in the window that exceeded their token budget.
     *
     * @param days the window, 1 to {@link #MAX_DAYS}
     */
    public BudgetViolations budgetViolations(String tenant, int days) {
        checkDays(days);
        return read(handle -> {
            Window window = window(handle, days);
            return handle.createQuery(BUDGET)
                    .bind("tenant", tenant)
                    .bind("from", window.from().atOffset(ZoneOffset.UTC))
                    .bind("to", window.to().atOffset(ZoneOffset.UTC))
                    .map((rs, ctx) -> new BudgetViolations(window, rs.getLong("tasks"), rs.getLong("tasks_with_violations"),
                            rs.getLong("violations"), rs.getLong("violations_last_24h")))
                    .one();
        });
    }

    /**
     * The seed's metric 2: the tenant's agent runs in the window that failed on a rate limit after their retries,
     * in total and per agent.
     *
     * @param days the window, 1 to {@link #MAX_DAYS}
     */
    public RateLimitFailures rateLimitFailures(String tenant, int days) {
        checkDays(days);
        return read(handle -> {
            Window window = window(handle, days);
            List<AgentRateLimits> agents = handle.createQuery(RATE_LIMITS)
                    .bind("tenant", tenant)
                    .bind("from", window.from().atOffset(ZoneOffset.UTC))
                    .map((rs, ctx) -> new AgentRateLimits(rs.getString("cli_name"), rs.getLong("api_calls"),
                            rs.getLong("failures"), rs.getLong("retries")))
                    .list();
            return new RateLimitFailures(window, agents);
        });
    }

    /**
     * The seed's metric 3: the tenant's runs in the window that cost more than {@link #ANOMALY_FACTOR} times the
     * average of all the tenant's runs of the same agent, most expensive first.
     *
     * @param days  the window, 1 to {@link #MAX_DAYS}
     * @param limit rows at most, 1 to {@link #MAX_ANOMALY_LIMIT}
     */
    public CostAnomalies costAnomalies(String tenant, int days, int limit) {
        checkDays(days);
        if (limit < 1 || limit > MAX_ANOMALY_LIMIT) {
            throw new IllegalArgumentException("limit=" + limit + ": must be 1.." + MAX_ANOMALY_LIMIT);
        }
        return read(handle -> {
            Window window = window(handle, days);
            long[] total = {0};
            List<CostAnomaly> rows = handle.createQuery(ANOMALIES)
                    .bind("tenant", tenant)
                    .bind("from", window.from().atOffset(ZoneOffset.UTC))
                    .bind("factor", ANOMALY_FACTOR)
                    .bind("limit", limit)
                    .map((rs, ctx) -> {
                        total[0] = rs.getLong("total");
                        return anomaly(rs);
                    })
                    .list();
            return new CostAnomalies(window, total[0], rows);
        });
    }

    private static CostAnomaly anomaly(ResultSet rs) throws SQLException {
        BigDecimal cost = rs.getBigDecimal("cost");
        BigDecimal average = rs.getBigDecimal("avg_cost");
        return new CostAnomaly(rs.getObject("task_id", UUID.class), rs.getString("job_id"), rs.getInt("attempt"),
                rs.getString("cli_name"), cost, average.setScale(6, RoundingMode.HALF_UP),
                cost.divide(average, 2, RoundingMode.HALF_UP), instant(rs, "created_at"));
    }

    // The newest error rows of the tenant's tasks (what a dashboard shows as "recent errors").
    private static final String RECENT_ERRORS = """
            SELECT e.id, e.task_id, e.job_id, e.cli_name, e.error_type, e.error_message, e.retryable, e.occurred_at
            FROM task_errors e
            JOIN tasks t ON t.id = e.task_id
            WHERE t.tenant = :tenant
            ORDER BY e.occurred_at DESC, e.id DESC
            LIMIT :limit
            """;

    /** Error rows a recent-errors list shows at most. */
    public static final int MAX_RECENT_ERRORS = 200;

    /**
     * The newest error rows of the tenant's tasks, newest first. Messages are stored redacted.
     *
     * @param limit rows at most, 1 to {@link #MAX_RECENT_ERRORS}
     */
    public List<RecentError> recentErrors(String tenant, int limit) {
        if (limit < 1 || limit > MAX_RECENT_ERRORS) {
            throw new IllegalArgumentException("limit=" + limit + ": must be 1.." + MAX_RECENT_ERRORS);
        }
        return read(handle -> handle.createQuery(RECENT_ERRORS)
                .bind("tenant", tenant)
                .bind("limit", limit)
                .map((rs, ctx) -> new RecentError(rs.getLong("id"), rs.getObject("task_id", UUID.class), rs.getString("job_id"),
                        rs.getString("cli_name"), rs.getString("error_type"), rs.getString("error_message"),
                        rs.getBoolean("retryable"), instant(rs, "occurred_at")))
                .list());
    }

    /** One error row of {@link #recentErrors}. */
    public record RecentError(long id, UUID taskId, String jobId, String cliName, String errorType, String errorMessage,
                              boolean retryable, Instant occurredAt) {
    }

    private static Window window(Handle handle, int days) {
        return handle.createQuery(WINDOW)
                .bind("days", days)
                .map((rs, ctx) -> new Window(days, instant(rs, "window_start"), instant(rs, "window_end")))
                .one();
    }

    private static void checkDays(int days) {
        if (days < 1 || days > MAX_DAYS) {
            throw new IllegalArgumentException("days=" + days + ": must be 1.." + MAX_DAYS);
        }
    }

    private <T> T read(HandleCallback<T, RuntimeException> work) {
        try {
            return database.jdbi().inTransaction(TransactionIsolationLevel.REPEATABLE_READ, work);
        } catch (JdbiException e) {
            throw new StoreException("Postgres: " + e.getMessage(), e);
        }
    }

    private static Instant instant(ResultSet rs, String column) throws SQLException {
        OffsetDateTime value = rs.getObject(column, OffsetDateTime.class);
        return value == null ? null : value.toInstant();
    }

    /** {@code 100 * part / whole} to two decimals (as the seed's {@code ROUND(..., 2)}), empty when whole is 0. */
    static Optional<BigDecimal> percent(long part, long whole) {
        if (whole == 0) {
            return Optional.empty();
        }
        return Optional.of(BigDecimal.valueOf(100L * part).divide(BigDecimal.valueOf(whole), 2, RoundingMode.HALF_UP));
    }

    /**
     * The period a report covers: {@code days} whole days up to the database's {@code now()}. Immutable.
     *
     * @param from start, inclusive
     * @param to   end: the moment the report was read
     */
    public record Window(int days, Instant from, Instant to) {
    }

    /**
     * The seed's metric 1 for one tenant. Immutable.
     *
     * @param tasks               distinct tasks with a result row in the window
     * @param tasksWithViolations of those, the tasks with a {@code BudgetExceededError} row
     * @param violations          {@code BudgetExceededError} rows that occurred in the window
     * @param violationsLast24h   {@code BudgetExceededError} rows of the last 24 hours
     */
    public record BudgetViolations(Window window, long tasks, long tasksWithViolations, long violations,
                                   long violationsLast24h) {

        /** {@code 100 * tasksWithViolations / tasks}, two decimals; empty when there are no tasks. */
        public Optional<BigDecimal> violationPct() {
            return percent(tasksWithViolations, tasks);
        }

        /** Whether the rate is below {@link #BUDGET_VIOLATION_TARGET_PCT}; empty when there are no tasks. */
        public Optional<Boolean> targetMet() {
            return violationPct().map(pct -> pct.compareTo(BUDGET_VIOLATION_TARGET_PCT) < 0);
        }
    }

    /**
     * Rate limits of one agent in the window. Immutable.
     *
     * @param cliName  the agent; {@code null} only for error rows that name none
     * @param apiCalls its result rows (agent runs)
     * @param failures its {@code RateLimitError} rows with {@code "final": true}: runs that failed after their retries
     * @param retries  its other {@code RateLimitError} rows: 429s that were retried
     */
    public record AgentRateLimits(String cliName, long apiCalls, long failures, long retries) {

        /** {@code 100 * failures / apiCalls}, two decimals; empty when there were no calls. */
        public Optional<BigDecimal> failurePct() {
            return percent(failures, apiCalls);
        }
    }

    /**
     * The seed's metric 2 for one tenant. Immutable.
     *
     * @param agents one entry per agent with runs or rate-limit rows in the window, by name
     */
    public record RateLimitFailures(Window window, List<AgentRateLimits> agents) {
        public RateLimitFailures {
            agents = List.copyOf(agents);
        }

        public long apiCalls() {
            return agents.stream().mapToLong(AgentRateLimits::apiCalls).sum();
        }

        public long failures() {
            return agents.stream().mapToLong(AgentRateLimits::failures).sum();
        }

        public long retries() {
            return agents.stream().mapToLong(AgentRateLimits::retries).sum();
        }

        /** {@code 100 * failures / apiCalls}, two decimals; empty when there were no calls. */
        public Optional<BigDecimal> failurePct() {
            return percent(failures(), apiCalls());
        }

        /** Whether the rate is below {@link #RATE_LIMIT_FAILURE_TARGET_PCT}; empty when there were no calls. */
        public Optional<Boolean> targetMet() {
            return failurePct().map(pct -> pct.compareTo(RATE_LIMIT_FAILURE_TARGET_PCT) < 0);
        }
    }

    /**
     * One run that cost far more than its agent's average. Immutable.
     *
     * @param cost         USD
     * @param agentAvgCost USD, the average of all the tenant's runs of this agent, six decimals
     * @param ratio        {@code cost / agentAvgCost}, two decimals
     */
    public record CostAnomaly(UUID taskId, String jobId, int attempt, String cliName, BigDecimal cost,
                              BigDecimal agentAvgCost, BigDecimal ratio, Instant createdAt) {
    }

    /**
     * The seed's metric 3 for one tenant. Immutable.
     *
     * @param total     anomalies in the window, also those past the limit
     * @param anomalies the most expensive ones, cost descending
     */
    public record CostAnomalies(Window window, long total, List<CostAnomaly> anomalies) {
        public CostAnomalies {
            anomalies = List.copyOf(anomalies);
        }
    }
}
