package dev.kage.coordinator.reports;

import dev.kage.coordinator.api.QueryParameters;
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.api.ApiDocs;
import io.swagger.v3.oas.annotations.Operation;
import io.swagger.v3.oas.annotations.Parameter;
import io.swagger.v3.oas.annotations.enums.ParameterIn;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.parameters.RequestBody;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import io.swagger.v3.oas.annotations.tags.Tag;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.coordinator.task.InvalidRequestException;
import dev.kage.store.ReportQueries;
import dev.kage.store.ReportQueries.AgentRateLimits;
import dev.kage.store.ReportQueries.BudgetViolations;
import dev.kage.store.ReportQueries.CostAnomalies;
import dev.kage.store.ReportQueries.RateLimitFailures;
import dev.kage.store.ReportQueries.Window;
import io.micronaut.http.HttpParameters;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Get;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.math.BigDecimal;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The seed document's success metrics for the caller's tenant: {@code GET /api/v1/reports/budget-violations},
 * {@code /rate-limit-failures} and {@code /cost-anomalies}. Query parameter {@code days} (1 to 366, default 30)
 * sets the window, {@code limit} (1 to 500, default 50) the anomalies listed. {@code /recent-errors} lists the newest
 * error rows ({@code limit} 1 to 200, default 20). A tenant sees only figures of its own tasks.
 */
@Controller("/api/v1/reports")
@Tag(name = "reports")
@ExecuteOn(TaskExecutors.BLOCKING)
public class ReportsController {
    private final ReportQueries queries;

    public ReportsController(ReportQueries queries) {
        this.queries = queries;
    }

    @Operation(operationId = "budgetViolations", summary = "Metric 1: tasks that exceeded their token budget",
            parameters = @Parameter(name = "days", in = ParameterIn.QUERY, example = "30",
                    description = "the window in whole days ending now",
                    schema = @Schema(type = "integer", minimum = "1", maximum = "366", defaultValue = "30")),
            description = "Target: below 5% of the tasks with a result in the window.")
    @ApiResponse(responseCode = "200", description = "The figures",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = BudgetViolationsView.class),
                    examples = @ExampleObject(name = "a week", value = """
                            {"window": {"days": 7, "from": "2025-06-03T08:00:00Z", "to": "2025-06-10T08:00:00Z"}, "tasks": 8, "tasks_with_violations": 2, \
                            "violations": 2, "violations_last_24h": 1, "budget_violation_pct": 25.00, "target_pct": 5, "met": false}""")))
    @ApiResponse(responseCode = "400", description = "A bad `days` or `limit`, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "days", value = """
                    {"error": "validation_failed", "message": "the request is invalid: days", \
                    "errors": [{"field": "days", "message": "'0' is not a whole number from 1 to 366 (default 30)"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @QueryParameters("days")
    @Get(value = "/budget-violations", produces = MediaType.APPLICATION_JSON)
    public BudgetViolationsView budgetViolations(HttpRequest<?> request) {
        List<FieldError> errors = new ArrayList<>();
        int days = days(request.getParameters(), errors);
        reject(errors);
        BudgetViolations report = queries.budgetViolations(tenant(request), days);
        return new BudgetViolationsView(WindowView.of(report.window()), report.tasks(), report.tasksWithViolations(),
                report.violations(), report.violationsLast24h(), report.violationPct().orElse(null),
                ReportQueries.BUDGET_VIOLATION_TARGET_PCT, report.targetMet().orElse(null));
    }

    @Operation(operationId = "rateLimitFailures", summary = "Metric 2: rate-limit failures after retries",
            parameters = @Parameter(name = "days", in = ParameterIn.QUERY, example = "30",
                    description = "the window in whole days ending now",
                    schema = @Schema(type = "integer", minimum = "1", maximum = "366", defaultValue = "30")),
            description = "429s that ended a run after its retries, per agent run in the window. Target: below 1%.")
    @ApiResponse(responseCode = "200", description = "The figures",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = RateLimitFailuresView.class),
                    examples = @ExampleObject(name = "a week", value = """
                            {"window": {"days": 7, "from": "2025-06-03T08:00:00Z", "to": "2025-06-10T08:00:00Z"}, "api_calls": 200, \
                            "rate_limit_failures": 1, "rate_limited_retries": 14, "rate_limit_failure_pct": 0.50, "target_pct": 1, \
                            "met": true, "agents": [{"cli_name": "claude-code", "api_calls": 200, "rate_limit_failures": 1, \
                            "rate_limited_retries": 14, "rate_limit_failure_pct": 0.50}]}""")))
    @ApiResponse(responseCode = "400", description = "A bad `days` or `limit`, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "days", value = """
                    {"error": "validation_failed", "message": "the request is invalid: days", \
                    "errors": [{"field": "days", "message": "'0' is not a whole number from 1 to 366 (default 30)"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @QueryParameters("days")
    @Get(value = "/rate-limit-failures", produces = MediaType.APPLICATION_JSON)
    public RateLimitFailuresView rateLimitFailures(HttpRequest<?> request) {
        List<FieldError> errors = new ArrayList<>();
        int days = days(request.getParameters(), errors);
        reject(errors);
        RateLimitFailures report = queries.rateLimitFailures(tenant(request), days);
        List<AgentView> agents = report.agents().stream().map(AgentView::of).toList();
        return new RateLimitFailuresView(WindowView.of(report.window()), report.apiCalls(), report.failures(),
                report.retries(), report.failurePct().orElse(null), ReportQueries.RATE_LIMIT_FAILURE_TARGET_PCT,
                report.targetMet().orElse(null), agents);
    }

    @Operation(operationId = "costAnomalies", summary = "Metric 3: runs that cost more than 3 times their agent's average",
            parameters = {
                    @Parameter(name = "days", in = ParameterIn.QUERY, example = "30",
                            description = "the window in whole days ending now",
                            schema = @Schema(type = "integer", minimum = "1", maximum = "366", defaultValue = "30")),
                    @Parameter(name = "limit", in = ParameterIn.QUERY, example = "50",
                            description = "anomalies listed at most",
                            schema = @Schema(type = "integer", minimum = "1", maximum = "500", defaultValue = "50"))
            },
            description = "Dearest first; `total` counts the anomalies past `limit` too.")
    @ApiResponse(responseCode = "200", description = "The anomalies",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = CostAnomaliesView.class),
                    examples = @ExampleObject(name = "one anomaly", value = """
                            {"window": {"days": 7, "from": "2025-06-03T08:00:00Z", "to": "2025-06-10T08:00:00Z"}, "factor": 3, "limit": 50, "total": 1, \
                            "anomalies": [{"task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "job_id": "0b8f2c1e:claude-code", \
                            "attempt": 1, "cli_name": "claude-code", "cost": 1.250000, "agent_avg_cost": 0.300000, "ratio": 4.17, \
                            "created_at": "2025-06-09T14:00:00Z"}]}""")))
    @ApiResponse(responseCode = "400", description = "A bad `days` or `limit`, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "days", value = """
                    {"error": "validation_failed", "message": "the request is invalid: days", \
                    "errors": [{"field": "days", "message": "'0' is not a whole number from 1 to 366 (default 30)"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @QueryParameters({"days", "limit"})
    @Get(value = "/cost-anomalies", produces = MediaType.APPLICATION_JSON)
    public CostAnomaliesView costAnomalies(HttpRequest<?> request) {
        List<FieldError> errors = new ArrayList<>();
        int days = days(request.getParameters(), errors);
        int limit = integer(request.getParameters(), "limit", 1, ReportQueries.MAX_ANOMALY_LIMIT,
                ReportQueries.DEFAULT_ANOMALY_LIMIT, errors);
        reject(errors);
        CostAnomalies report = queries.costAnomalies(tenant(request), days, limit);
        List<AnomalyView> anomalies = report.anomalies().stream()
                .map(a -> new AnomalyView(a.taskId().toString(), a.jobId(), a.attempt(), a.cliName(), a.cost(),
                        a.agentAvgCost(), a.ratio(), a.createdAt()))
                .toList();
        return new CostAnomaliesView(WindowView.of(report.window()), ReportQueries.ANOMALY_FACTOR, limit, report.total(),
                anomalies);
    }

    /** The newest error rows of the caller's tasks: {@code limit} 1 to 200, default 20. */
    @Operation(operationId = "recentErrors", summary = "The newest error rows of the caller's tasks",
            parameters = @Parameter(name = "limit", in = ParameterIn.QUERY, example = "20", description = "rows at most",
                    schema = @Schema(type = "integer", minimum = "1", maximum = "200", defaultValue = "20")),
            description = "Newest first, no window; messages are stored redacted.")
    @ApiResponse(responseCode = "200", description = "The rows",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = RecentErrorsView.class),
                    examples = @ExampleObject(name = "one error", value = """
                            {"errors": [{"id": 812, "task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", \
                            "job_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90:claude-code", "cli_name": "claude-code", \
                            "error_type": "RateLimitError", "error_message": "Rate limit: claude-code answered 429", \
                            "retryable": true, "occurred_at": "2025-06-10T08:00:00Z"}]}""")))
    @ApiResponse(responseCode = "400", description = "A bad `limit`, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "limit", value = """
                    {"error": "validation_failed", "message": "the request is invalid: limit", \
                    "errors": [{"field": "limit", "message": "'0' is not a whole number from 1 to 200 (default 20)"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @QueryParameters("limit")
    @Get(value = "/recent-errors", produces = MediaType.APPLICATION_JSON)
    public RecentErrorsView recentErrors(HttpRequest<?> request) {
        List<FieldError> errors = new ArrayList<>();
        int limit = integer(request.getParameters(), "limit", 1, ReportQueries.MAX_RECENT_ERRORS, 20, errors);
        reject(errors);
        return new RecentErrorsView(queries.recentErrors(tenant(request), limit).stream()
                .map(e -> new RecentErrorView(e.id(), e.taskId().toString(), e.jobId(), e.cliName(), e.errorType(),
                        e.errorMessage(), e.retryable(), e.occurredAt()))
                .toList());
    }

    private static int days(HttpParameters parameters, List<FieldError> errors) {
        return integer(parameters, "days", 1, ReportQueries.MAX_DAYS, ReportQueries.DEFAULT_DAYS, errors);
    }

    /** The parameter as a whole number in {@code min..max}; absent gives the default, anything else an error. */
    private static int integer(HttpParameters parameters, String name, int min, int max, int defaultValue,
                               List<FieldError> errors) {
        List<String> values = parameters.getAll(name);
        if (values.isEmpty()) {
            return defaultValue;
        }
        if (values.size() > 1) {
            errors.add(new FieldError(name, "given " + values.size() + " times; give it once"));
            return defaultValue;
        }
        String text = values.get(0).trim();
        int value;
        try {
            value = Integer.parseInt(text);
        } catch (NumberFormatException e) {
            value = min - 1;
        }
        if (value < min || value > max) {
            errors.add(new FieldError(name, "'" + ErrorBody.printable(text) + "' is not a whole number from " + min + " to " + max
                    + " (default " + defaultValue + ")"));
            return defaultValue;
        }
        return value;
    }

    private static void reject(List<FieldError> errors) {
        if (!errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
    }


    private static String tenant(HttpRequest<?> request) {
        return request.getAttribute(ApiKeyFilter.TENANT, String.class)
                .orElseThrow(() -> new IllegalStateException("ApiKeyFilter did not run for " + request.getPath()));
    }

    /** @param errors newest first */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record RecentErrorsView(List<RecentErrorView> errors) {
    }

    /** One error row, as {@code task_errors} holds it. */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record RecentErrorView(long id, String taskId, String jobId, String cliName, String errorType, String errorMessage,
                                  boolean retryable, Instant occurredAt) {
    }

    /**
     * @param days the window's length
     * @param from start of the window, inclusive
     * @param to   when the figures were read (the database's clock)
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record WindowView(int days, Instant from, Instant to) {
        static WindowView of(Window window) {
            return new WindowView(window.days(), window.from(), window.to());
        }
    }

    /**
     * The seed's metric 1.
     *
     * @param tasks               tasks with a result in the window
     * @param tasksWithViolations of those, tasks with a {@code BudgetExceededError} row
     * @param violations          {@code BudgetExceededError} rows in the window
     * @param violationsLast24h   {@code BudgetExceededError} rows in the last 24 hours
     * @param budgetViolationPct  {@code 100 * tasks_with_violations / tasks}, two decimals; {@code null} without tasks
     * @param targetPct           the seed's target: below this
     * @param met                 whether the rate is below the target; {@code null} without tasks
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record BudgetViolationsView(WindowView window, long tasks, long tasksWithViolations, long violations,
                                       @JsonProperty("violations_last_24h") long violationsLast24h,
                                       BigDecimal budgetViolationPct, BigDecimal targetPct,
                                       Boolean met) {
    }

    /**
     * The seed's metric 2.
     *
     * @param apiCalls            agent runs (result rows) in the window
     * @param rateLimitFailures   runs that failed on a rate limit after their retries ({@code RateLimitError}, final)
     * @param rateLimitedRetries  429s that were retried ({@code RateLimitError}, not final)
     * @param rateLimitFailurePct {@code 100 * rate_limit_failures / api_calls}, two decimals; {@code null} without calls
     * @param targetPct           the seed's target: below this
     * @param met                 whether the rate is below the target; {@code null} without calls
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record RateLimitFailuresView(WindowView window, long apiCalls, long rateLimitFailures, long rateLimitedRetries,
                                        BigDecimal rateLimitFailurePct, BigDecimal targetPct, Boolean met,
                                        List<AgentView> agents) {
    }

    /** One agent's share of {@link RateLimitFailuresView}. */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record AgentView(String cliName, long apiCalls, long rateLimitFailures, long rateLimitedRetries,
                            BigDecimal rateLimitFailurePct) {
        static AgentView of(AgentRateLimits agent) {
            Optional<BigDecimal> pct = agent.failurePct();
            return new AgentView(agent.cliName(), agent.apiCalls(), agent.failures(), agent.retries(), pct.orElse(null));
        }
    }

    /**
     * The seed's metric 3.
     *
     * @param factor    a run is listed when it cost more than this many times its agent's average
     * @param limit     anomalies listed at most
     * @param total     anomalies in the window, also those past the limit
     * @param anomalies most expensive first
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record CostAnomaliesView(WindowView window, BigDecimal factor, int limit, long total,
                                    List<AnomalyView> anomalies) {
    }

    /**
     * @param cost         USD
     * @param agentAvgCost USD, the average of all the tenant's runs of this agent
     * @param ratio        {@code cost / agent_avg_cost}, two decimals
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record AnomalyView(String taskId, String jobId, int attempt, String cliName, BigDecimal cost,
                              BigDecimal agentAvgCost, BigDecimal ratio, Instant createdAt) {
    }
}
