package dev.kage.coordinator.task;

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
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.task.TaskStatus;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.PathVariable;
import io.micronaut.http.annotation.Post;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.util.Optional;
import java.util.UUID;

/** {@code POST /api/v1/tasks/{id}/cancel}: queued jobs never start, running agents are stopped. */
@Controller("/api/v1/tasks")
@Tag(name = "tasks")
@ExecuteOn(TaskExecutors.BLOCKING)
public class CancelController {
    private final TaskService service;

    public CancelController(TaskService service) {
        this.service = service;
    }

    /** 202 when cancelled now; 409 when the task had already ended; 404 for an unknown or another tenant's task. */
    @Operation(operationId = "cancelTask", summary = "Cancel a task",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "id", in = ParameterIn.PATH,
                    example = "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", description = "the task id"),
            description = "The task ends `cancelled` at once: its queued jobs never start and its running agents are stopped "
                    + "within about a second (process tree killed, budget reservation released). No body.")
    @ApiResponse(responseCode = "202", description = "Cancelled now",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Cancelled.class),
                    examples = @ExampleObject(name = "cancelled", value = """
                            {"task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", "status": "cancelled", \
                            "previous_status": "running"}""")))
    @ApiResponse(responseCode = "404", description = "No such task for this key's tenant (another tenant's task too)",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no task 019ad735-8400-7c1e-9a57-3f1d2b6c8e90 for this API key", \
                    "errors": []}""")))
    @ApiResponse(responseCode = "409", description = "The task had already ended",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "ended", value = """
                    {"error": "conflict", "message": "task 019ad735-8400-7c1e-9a57-3f1d2b6c8e90 already ended as completed; \
                    nothing to cancel", "errors": []}""")))
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Post(value = "/{id}/cancel", consumes = MediaType.ALL, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> cancel(HttpRequest<?> request, @PathVariable String id) {
        String tenant = request.getAttribute(ApiKeyFilter.TENANT, String.class).orElseThrow();
        Optional<UUID> taskId = parse(id);
        Optional<TaskStatus> before = taskId.flatMap(uuid -> service.cancel(tenant, uuid));
        if (before.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no task " + dev.kage.coordinator.api.ErrorBody.printable(id) + " for this API key"));
        }
        if (before.get().isFinal()) {
            return HttpResponse.status(HttpStatus.CONFLICT).body(ErrorBody.of("conflict",
                    "task " + id + " already ended as " + before.get().wireName() + "; nothing to cancel"));
        }
        return HttpResponse.status(HttpStatus.ACCEPTED).body(new Cancelled(id, TaskStatus.CANCELLED.wireName(),
                before.get().wireName()));
    }

    private static Optional<UUID> parse(String id) {
        try {
            return Optional.of(UUID.fromString(id));
        } catch (IllegalArgumentException e) {
            return Optional.empty();
        }
    }

    /**
     * @param previousStatus the task's status when the cancel arrived
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Cancelled(String taskId, String status, String previousStatus) {
    }
}
