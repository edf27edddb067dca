package dev.kage.coordinator.task;

import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.PeriodLimits;
import dev.kage.coordinator.api.ErrorBody;
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
import io.micronaut.http.annotation.Header;
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
@ExecuteOn(TaskExecutors.BLOCKING)
public class TaskController {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final SubmitRequestParser parser;
    private final TaskService service;
    private final TaskStore store;
    private final LiveTaskState live;
    private final BudgetLedger budget;

    public TaskController(SubmitRequestParser parser, TaskService service, TaskStore store, LiveTaskState live,
                          BudgetLedger budget) {
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
    @RequiresScope(Scope.SUBMIT)
    @Post(consumes = {MediaType.APPLICATION_JSON, MediaType.APPLICATION_FORM_URLENCODED, MediaType.TEXT_PLAIN,
            MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<SubmitResponse> submit(HttpRequest<?> request, @Body byte[] body,
                                               @Nullable @Header("Idempotency-Key") String idempotencyKey) {
        String tenant = tenant(request);
        SubmitRequest submit = parser.parse(body);
        TaskService.Submitted submitted = service.submit(tenant, submit, IdempotencyKeys.validate(idempotencyKey), body);
        TaskRecord task = submitted.task();
        String url = "/api/v1/tasks/" + task.id();
        var response = HttpResponse.<SubmitResponse>status(HttpStatus.ACCEPTED)
                .header("Location", url)
                .header("Idempotent-Replayed", Boolean.toString(submitted.replayed()));
        remainingBudgetHeaders(response, tenant, task.tokenLimit());
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
    private void remainingBudgetHeaders(io.micronaut.http.MutableHttpResponse<?> response, String tenant, long taskTokens) {
        response.header("X-Budget-Task-Tokens", Long.toString(taskTokens));
        try {
            for (BudgetLedger.PoolState pool : budget.tenantPools(tenant)) {
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

    /** The tenant's tasks, newest first, filtered and paged by query parameters (see {@link TaskListing}). */
    @RequiresScope(Scope.READ)
    @Get(produces = MediaType.APPLICATION_JSON)
    public TaskListView list(HttpRequest<?> request) {
        return listing.list(tenant(request), request.getParameters());
    }

    @RequiresScope(Scope.READ)
    @Get(value = "/{id}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> get(HttpRequest<?> request, @PathVariable String id) {
        Optional<UUID> taskId = parseId(id);
        Optional<TaskRecord> task = taskId.flatMap(uuid -> store.find(tenant(request), uuid));
        if (task.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no task " + id + " for this API key"));
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
                task.repo(), task.baseBranch(), task.createdAt(), task.updatedAt(), task.completedAt(),
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
