package dev.kage.coordinator.task;

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
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.task.Assignment;
import dev.kage.task.TaskRecord;
import io.micronaut.core.annotation.Nullable;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Body;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Post;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.util.List;

/**
 * {@code POST /api/v1/tasks:batch} — up to 1,000 tasks in one request, each in the single submit's
 * shape: {@code {"tasks": [{"description": ..., "cli_assignments": [...]}, ...]}}. All or nothing: one
 * bad field anywhere is a 400 naming it (e.g. {@code tasks[3].cli_assignments[0].cli_name}) and no task
 * is created. With an {@code Idempotency-Key}, a repeated batch returns the tasks the first one created
 * ({@link TaskService#submitBatch}).
 */
@Controller("/api/v1")
@Tag(name = "tasks")
@ExecuteOn(TaskExecutors.BLOCKING)
public class BatchController {
    private final SubmitRequestParser parser;
    private final RepoPolicy repos;
    private final TaskService service;

    public BatchController(SubmitRequestParser parser, TaskService service, RepoPolicy repos) {
        this.repos = repos;
        this.parser = parser;
        this.service = service;
    }

    @Operation(operationId = "submitBatch", summary = "Submit up to 1,000 tasks at once",
            parameters = @Parameter(name = "Idempotency-Key", in = ParameterIn.HEADER,
                    schema = @Schema(type = "string"), example = "import-2025-01-31-part-3",
                    description = "1 to 200 printable characters; makes the batch safe to repeat"),
            description = "Each task in the single submit's shape, recorded in one statement; answered once the rows are "
                    + "committed, while the batch relay adds the jobs to their streams in pipelined Redis script calls "
                    + "(moments later; after a Redis outage, the reconciler does). All or nothing: one bad field anywhere is a 400 naming it and no task is created. "
                    + "With `Idempotency-Key`, the same key and body return the tasks the first request created, in order "
                    + "(`Idempotent-Replayed: true`), and create none; the same key with another body is a 422.",
            requestBody = @RequestBody(required = true, content = @Content(mediaType = MediaType.APPLICATION_JSON,
                    schema = @Schema(implementation = TaskBodies.Batch.class), examples = @ExampleObject(name = "two tasks",
                    value = """
                            {"tasks": [{"description": "Fix the login bug", "cli_assignments": [{"cli_name": "claude-code"}]}, \
                            {"description": "Write release notes", "priority": "low", \
                            "cli_assignments": [{"cli_name": "codex", "timeout": 300}]}]}"""))))
    @ApiResponse(responseCode = "202", description = "Every task accepted, in the order sent",
            headers = @io.swagger.v3.oas.annotations.headers.Header(name = "Idempotent-Replayed",
                    description = "`true` when an earlier request with the same Idempotency-Key created the tasks"),
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Accepted.class),
                    examples = @ExampleObject(name = "accepted", value = """
                            {"tasks": [{"task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "status": "queued", \
                            "status_url": "/api/v1/tasks/019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "agents": ["claude-code"], \
                            "ignored_fields": []}, {"task_id": "019ad735-8400-7c1f-8e7f-90a1b2c3d4e5", "status": "queued", \
                            "status_url": "/api/v1/tasks/019ad735-8400-7c1f-8e7f-90a1b2c3d4e5", "agents": ["codex"], \
                            "ignored_fields": []}]}""")))
    @ApiResponse(responseCode = "400", description = "A bad field, named with the task's index; no task was created",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "field", value = """
                            {"error": "validation_failed", "message": "the request is invalid: tasks[3].cli_assignments[0].cli_name", \
                            "errors": [{"field": "tasks[3].cli_assignments[0].cli_name", \
                            "message": "unknown agent 'claud'; configured agents: [claude-code, codex, demo]"}]}"""),
                    @ExampleObject(name = "not JSON", value = ApiDocs.BODY_NOT_JSON)}))
    @ApiResponse(responseCode = "422", description = "The Idempotency-Key was used for a different body; no task was created",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "idempotency conflict", value = """
                    {"error": "idempotency_conflict", "message": "Idempotency-Key 'import-7' was used for a different \
                    request (a batch of other tasks)", "errors": [{"field": "Idempotency-Key", "message": "was used for a \
                    different request"}]}""")))
    @ApiDocs.BodyTooLarge
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @Post(value = "/tasks:batch", consumes = {MediaType.APPLICATION_JSON, MediaType.APPLICATION_FORM_URLENCODED,
            MediaType.TEXT_PLAIN, MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<Accepted> submit(HttpRequest<?> request, @Parameter(hidden = true) @Nullable @Body byte[] body) {
        String tenant = request.getAttribute(ApiKeyFilter.TENANT, String.class).orElseThrow();
        String idempotencyKey = IdempotencyKeys.validate(dev.kage.coordinator.api.SingleHeader.of(request, "Idempotency-Key"));
        List<SubmitRequest> requests = parser.parseBatch(body);
        List<dev.kage.coordinator.api.ErrorBody.FieldError> refused = repos.refusals(tenant, requests);
        if (!refused.isEmpty()) {
            throw new InvalidRequestException(refused);
        }
        TaskService.BatchSubmitted submitted = service.submitBatch(tenant, requests, idempotencyKey, body);
        List<TaskRecord> tasks = submitted.tasks();
        List<SubmitResponse> accepted = new java.util.ArrayList<>(tasks.size());
        for (int i = 0; i < tasks.size(); i++) {
            TaskRecord t = tasks.get(i);
            // Each task's own unknown fields, as the single submit reports them: they had no effect.
            accepted.add(new SubmitResponse(t.id().toString(), t.status().wireName(), "/api/v1/tasks/" + t.id(),
                    t.assignments().stream().map(Assignment::cliName).toList(), requests.get(i).ignoredFields()));
        }
        return HttpResponse.status(HttpStatus.ACCEPTED).header("Idempotent-Replayed", Boolean.toString(submitted.replayed()))
                .body(new Accepted(accepted));
    }

    /**
     * @param tasks one entry per submitted task, in the order sent
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Accepted(List<SubmitResponse> tasks) {
    }
}
