package dev.kage.coordinator.task;

import dev.kage.coordinator.api.QueryParameters;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.PeriodLimits;
import dev.kage.coordinator.api.ApiDocs;
import dev.kage.coordinator.api.ErrorBody;
import io.swagger.v3.oas.annotations.Operation;
import io.swagger.v3.oas.annotations.Parameter;
import io.swagger.v3.oas.annotations.enums.ParameterIn;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.parameters.RequestBody;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import io.swagger.v3.oas.annotations.tags.Tag;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.store.TaskStore;
import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobStatus;
import dev.kage.task.LiveTaskState;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Body;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Get;
import io.micronaut.core.annotation.Nullable;
import io.micronaut.http.annotation.PathVariable;
import io.micronaut.http.annotation.Post;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import jakarta.inject.Inject;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;

/** Submit a task and read it back. Every route requires {@code X-API-Key}; a tenant sees only its own tasks. */
@Controller("/api/v1/tasks")
@Tag(name = "tasks")
@ExecuteOn(TaskExecutors.BLOCKING)
public class TaskController {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String TASK_EXAMPLE = """
            {"task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "status": "completed", "description": "Quick test", \
            "priority": "normal", "repo": null, "base_branch": "main", "created_at": "2025-06-10T08:00:00Z", \
            "updated_at": "2025-06-10T08:01:12Z", "completed_at": "2025-06-10T08:01:12Z", \
            "budget": {"token_limit": 100000, "tokens_used": 5120, "tokens_reserved": 0, "tokens_remaining": 94880, \
            "usd_used": 0.041200, "usd_reserved": 0.000000, "mode": "enforce"}, \
            "agents": [{"cli_name": "claude-code", "status": "completed", "timeout": 60, "tokens_in": 4100, "tokens_out": 1020, \
            "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 5120, "cost_usd": 0.041200, \
            "usage_source": "agent", "duration_ms": 71840, "exit_code": 0, "branch": "kage/0b8f2c1e/claude-code", \
            "commit": "9c1d4e7", "diff_stat": "1 file changed, 12 insertions(+)", "patch": "diff --git a/README.md b/README.md\\n...", \
            "output_summary": "Added a quick test section.", "worker": "worker-1", "waiting": null, "error": null}], \
            "errors": []}""";

    private final SubmitRequestParser parser;
    private final RepoPolicy repos;
    private final TaskService service;
    private final TaskStore store;
    private final LiveTaskState live;
    private final BudgetLedger budget;

    public TaskController(SubmitRequestParser parser, TaskService service, TaskStore store, LiveTaskState live,
                          BudgetLedger budget, RepoPolicy repos) {
        this.repos = repos;
        this.parser = parser;
        this.service = service;
        this.store = store;
        this.live = live;
        this.budget = budget;
    }

    /**
     * Accepts the seed's body ({@code {"description": ..., "cli_assignments": [{"cli_name": ..., "timeout": ...}]}})
     * with any content type, since the seed's {@code curl -d} sends none that says JSON.
     */
    @Operation(operationId = "submitTask", summary = "Submit a task",
            parameters = @Parameter(name = "Idempotency-Key", in = ParameterIn.HEADER,
                    schema = @Schema(type = "string"), example = "order-7f3a-retry-safe",
                    description = "1 to 200 printable characters; makes the request safe to repeat"),
            description = """
                    Queues one job per assigned agent. The body is read as JSON whatever the content type says (the seed's \
                    `curl -d` sends `application/x-www-form-urlencoded`). A task naming an agent no live worker serves is \
                    accepted and waits (header `X-Kage-Unserved-Agents`). With `Idempotency-Key`, the same key and body \
                    return the first task (`Idempotent-Replayed: true`); the same key with another body is a 422.""",
            requestBody = @RequestBody(required = true, content = @Content(mediaType = MediaType.APPLICATION_JSON,
                    schema = @Schema(implementation = TaskBodies.Submit.class), examples = {
                    @ExampleObject(name = "seed", summary = "The seed's request", value = """
                            {"description": "Quick test", "cli_assignments": [{"cli_name": "claude-code", "timeout": 60}]}"""),
                    @ExampleObject(name = "full", summary = "Every field", value = """
                            {"description": "Add a health endpoint", "priority": "high", \
                            "cli_assignments": [{"cli_name": "claude-code", "timeout": 600}, {"cli_name": "codex", "timeout": 600}], \
                            "repo": "https://github.com/acme/shop.git", "base_branch": "main", "budget": {"max_tokens": 200000}, \
                            "metadata": {"ticket": "SHOP-42"}}""")})))
    @ApiResponse(responseCode = "202", description = "Accepted: durable in Postgres, enqueued (or enqueued when Redis answers)",
            headers = {
                    @io.swagger.v3.oas.annotations.headers.Header(name = "Location", description = "the task's URL"),
                    @io.swagger.v3.oas.annotations.headers.Header(name = "Idempotent-Replayed",
                            description = "`true` when an earlier request with the same Idempotency-Key created the task"),
                    @io.swagger.v3.oas.annotations.headers.Header(name = "X-Budget-Task-Tokens", description = "the task's token pool"),
                    @io.swagger.v3.oas.annotations.headers.Header(name = "X-Kage-Unserved-Agents",
                            description = "assigned agents no live worker serves, comma-separated")},
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = SubmitResponse.class),
                    examples = @ExampleObject(name = "queued", value = """
                            {"task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "status": "queued", \
                            "status_url": "/api/v1/tasks/019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "agents": ["claude-code"], \
                            "ignored_fields": []}""")))
    @ApiResponse(responseCode = "400", description = "Bad input: every bad field named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "field", value = """
                            {"error": "validation_failed", "message": "the request is invalid: cli_assignments[0].timeout", \
                            "errors": [{"field": "cli_assignments[0].timeout", "message": "must be a whole number of seconds from 1 to 86400"}]}"""),
                    @ExampleObject(name = "not JSON", value = ApiDocs.BODY_NOT_JSON)}))
    @ApiResponse(responseCode = "422", description = "The Idempotency-Key was used for a different body",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "idempotency conflict", value = """
                    {"error": "idempotency_conflict", "message": "Idempotency-Key order-7f3a was used for a different request", \
                    "errors": [{"field": "Idempotency-Key", "message": "was used for a different request"}]}""")))
    @ApiDocs.BodyTooLarge
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @Post(consumes = {MediaType.APPLICATION_JSON, MediaType.APPLICATION_FORM_URLENCODED, MediaType.TEXT_PLAIN,
            MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<SubmitResponse> submit(HttpRequest<?> request, @Parameter(hidden = true) @Nullable @Body byte[] body) {
        String tenant = tenant(request);
        String idempotencyKey = dev.kage.coordinator.api.SingleHeader.of(request, "Idempotency-Key");
        SubmitRequest submit = parser.parse(body);
        repos.refusal(tenant, submit.repo(), "repo").ifPresent(refused -> {
            throw new InvalidRequestException(List.of(refused));
        });
        // Sent now, read after the submit: the figures travel in a flush the submit's wait covers anyway.
        var pools = submitPipeline.send(async -> budget.tenantPools(async, tenant));
        TaskService.Submitted submitted = service.submit(tenant, submit, IdempotencyKeys.validate(idempotencyKey), body);
        TaskRecord task = submitted.task();
        String url = "/api/v1/tasks/" + task.id();
        var response = HttpResponse.<SubmitResponse>status(HttpStatus.ACCEPTED)
                .header("Location", url)
                .header("Idempotent-Replayed", Boolean.toString(submitted.replayed()));
        remainingBudgetHeaders(response, pools, task.tokenLimit());
        List<String> unserved = task.assignments().stream().map(Assignment::cliName)
                .filter(agent -> served.waiting(agent).isPresent()).distinct().toList();
        if (!unserved.isEmpty()) {
            response.header("X-Kage-Unserved-Agents", String.join(",", unserved));
        }
        return response.body(new SubmitResponse(task.id().toString(), task.status().wireName(), url,
                        task.assignments().stream().map(Assignment::cliName).toList(), submit.ignoredFields()));
    }

    /**
     * {@code X-Budget-Task-Tokens} (the task's pool) and, for each of the tenant's limited period pools,
     * {@code X-Budget-Remaining-Tokens-Day|Month} and {@code X-Budget-Remaining-Usd-Day|Month} as they stand now.
     * The task is accepted already: a Redis hiccup here drops the headers, not the submit.
     */
    private void remainingBudgetHeaders(io.micronaut.http.MutableHttpResponse<?> response,
                                        java.util.concurrent.CompletableFuture<List<BudgetLedger.PoolState>> pools, long taskTokens) {
        response.header("X-Budget-Task-Tokens", Long.toString(taskTokens));
        try {
            for (BudgetLedger.PoolState pool : submitPipeline.await(pools)) {
                String period = pool.pool().period().startsWith("day") ? "Day" : "Month";
                if (pool.limit() > 0) {
                    response.header("X-Budget-Remaining-Tokens-" + period, Long.toString(Math.max(0, pool.remaining())));
                }
                if (pool.usdLimitMicros() > 0) {
                    response.header("X-Budget-Remaining-Usd-" + period,
                            PeriodLimits.usd(Math.max(0, pool.usdRemainingMicros())).toPlainString());
                }
            }
        } catch (io.lettuce.core.RedisException e) {
            // The task is in Postgres and will run; only the figures are missing.
        }
    }

    @Inject
    TaskListing listing;

    @Inject
    ServedAgents served;

    @Inject
    @jakarta.inject.Named("submit")
    dev.kage.redis.RedisPipeline submitPipeline;

    /** The tenant's tasks, newest first, filtered and paged by query parameters (see {@link TaskListing}). */
    @Operation(operationId = "listTasks", summary = "List the tenant's tasks",
            parameters = {
                    @Parameter(name = "status", in = ParameterIn.QUERY, schema = @Schema(type = "string"),
                            example = "queued,running",
                            description = "one or more of queued, running, completed, partial, failed, cancelled, comma-separated"),
                    @Parameter(name = "agent", in = ParameterIn.QUERY, schema = @Schema(type = "string"),
                            example = "claude-code", description = "tasks assigning this agent"),
                    @Parameter(name = "since", in = ParameterIn.QUERY, schema = @Schema(type = "string"),
                            example = "2025-01-31T12:00:00Z",
                            description = "ISO-8601 instant: tasks created at or after it"),
                    @Parameter(name = "limit", in = ParameterIn.QUERY, example = "20",
                            schema = @Schema(type = "integer", minimum = "1", maximum = "100", defaultValue = "20"),
                            description = "tasks per page"),
                    @Parameter(name = "cursor", in = ParameterIn.QUERY, schema = @Schema(type = "string"),
                    description = "`next_cursor` of the previous page; opaque")
            },
            description = "Newest first, filtered by the query parameters; pages follow `(created_at, id)`, so tasks "
                    + "submitted meanwhile never shift or repeat a page.")
    @ApiResponse(responseCode = "200", description = "One page of tasks",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = TaskListView.class),
                    examples = @ExampleObject(name = "page", value = """
                            {"tasks": [{"task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "status": "completed", \
                            "description": "Quick test", "priority": "normal", "agents": ["claude-code"], \
                            "created_at": "2025-06-10T08:00:00Z", "updated_at": "2025-06-10T08:01:12Z", \
                            "completed_at": "2025-06-10T08:01:12Z"}], "next_cursor": null}""")))
    @ApiResponse(responseCode = "400", description = "A bad query parameter, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "limit", value = """
                    {"error": "validation_failed", "message": "the request is invalid: limit", \
                    "errors": [{"field": "limit", "message": "'0' is not a whole number from 1 to 100 (default 20)"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @QueryParameters(value = {"status", "agent", "since", "limit", "cursor"}, repeatable = "status")
    @Get(produces = MediaType.APPLICATION_JSON)
    public TaskListView list(HttpRequest<?> request) {
        return listing.list(tenant(request), request.getParameters());
    }

    @Operation(operationId = "getTask", summary = "Read a task",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "id", in = ParameterIn.PATH,
                    example = "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", description = "the task id"),
            description = "Its status, budget, one entry per agent (tokens, cost, duration, branch, commit, patch, first "
                    + "error, and why it waits while no live worker serves its agent) and every error row.")
    @ApiResponse(responseCode = "200", description = "The task",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = TaskView.class),
                    examples = @ExampleObject(name = "completed", value = TASK_EXAMPLE)))
    @ApiResponse(responseCode = "404", description = "No such task for this key's tenant (another tenant's task too)",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no task 019ad735-8400-7c1e-9a57-3f1d2b6c8e90 for this API key", \
                    "errors": []}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(value = "/{id}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> get(HttpRequest<?> request, @PathVariable String id) {
        Optional<UUID> taskId = parseId(id);
        Optional<TaskRecord> task = taskId.flatMap(uuid -> store.find(tenant(request), uuid));
        if (task.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no task " + dev.kage.coordinator.api.ErrorBody.printable(id) + " for this API key"));
        }
        return HttpResponse.ok(view(task.get()));
    }

    private TaskView view(TaskRecord task) {
        List<ResultRecord> results = store.results(task.id());
        List<ErrorRecord> errors = store.errors(task.id());
        Map<String, String> liveState = live.all(task.tenant(), task.id().toString());
        Map<String, ResultRecord> byAgent = new HashMap<>();
        results.forEach(r -> byAgent.put(r.cliName(), r));
        List<TaskView.ErrorView> errorViews = errors.stream().map(TaskController::errorView).toList();
        List<TaskView.AgentView> agents = new ArrayList<>();
        for (Assignment assignment : task.assignments()) {
            String agent = assignment.cliName();
            ResultRecord r = byAgent.get(agent);
            TaskView.ErrorView firstError = errorViews.stream().filter(e -> agent.equals(e.cliName())).findFirst().orElse(null);
            if (r == null) {
                String status = Optional.ofNullable(liveState.get("job:" + agent)).orElse(
                        task.status().isFinal() ? JobStatus.FAILED.wireName() : JobStatus.QUEUED.wireName());
                String waiting = status.equals(JobStatus.QUEUED.wireName()) ? served.waiting(agent).orElse(null) : null;
                agents.add(new TaskView.AgentView(agent, status, assignment.timeoutSeconds(), 0, 0, 0, 0, 0,
                        BigDecimal.ZERO.setScale(6), null, 0, null, null, null, null, null, null, liveState.get("worker:" + agent),
                        waiting, firstError));
            } else {
                agents.add(new TaskView.AgentView(agent, r.status().wireName(), assignment.timeoutSeconds(), r.tokensIn(),
                        r.tokensOut(), r.cacheReadTokens(), r.cacheWriteTokens(), r.totalTokens(), r.cost(), r.usageSource(),
                        r.durationMs(), r.exitCode(), r.branch(), r.commitSha(), r.diffStat(), r.patch(), r.outputSummary(), r.workerId(),
                        null, firstError));
            }
        }
        var pool = budget.taskPool(task.tenant(), task.id().toString(), task.tokenLimit(), 0);
        return new TaskView(task.id().toString(), task.status().wireName(), task.description(), task.priority().wireName(),
                // A repository URL's credentials (https://user:token@host) are the operator's, not for every read key.
                dev.kage.task.UrlCredentials.mask(task.repo()), task.baseBranch(), task.createdAt(), task.updatedAt(),
                task.completedAt(),
                new TaskView.Budget(pool.limit(), pool.used(), pool.reserved(), pool.remaining(),
                        PeriodLimits.usd(pool.usdUsedMicros()), PeriodLimits.usd(pool.usdReservedMicros()),
                        budget.mode().name().toLowerCase()), agents, errorViews);
    }

    private static TaskView.ErrorView errorView(ErrorRecord e) {
        Map<String, Object> details;
        try {
            details = JSON.readValue(e.detailsJson(), new TypeReference<LinkedHashMap<String, Object>>() {
            });
        } catch (JsonProcessingException notAnObject) {
            details = Map.of("raw", e.detailsJson());
        }
        return new TaskView.ErrorView(e.cliName(), e.errorType(), e.errorMessage(), details, e.occurredAt());
    }

    private static Optional<UUID> parseId(String id) {
        try {
            return Optional.of(UUID.fromString(id));
        } catch (IllegalArgumentException e) {
            return Optional.empty();
        }
    }

    private static String tenant(HttpRequest<?> request) {
        return request.getAttribute(ApiKeyFilter.TENANT, String.class)
                .orElseThrow(() -> new IllegalStateException("ApiKeyFilter did not run for " + request.getPath()));
    }
}
