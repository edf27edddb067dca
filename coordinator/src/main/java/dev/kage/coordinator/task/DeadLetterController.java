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
import dev.kage.queue.JobQueue.DeadLetter;
import dev.kage.task.JobMessage;
import io.micronaut.core.annotation.Nullable;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Get;
import io.micronaut.http.annotation.PathVariable;
import io.micronaut.http.annotation.Post;
import io.micronaut.http.annotation.QueryValue;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.util.List;
import java.util.Optional;

/** The caller's dead letters ({@code kage:jobs:dead}) and their replay. */
@Controller("/api/v1/dead-letters")
@Tag(name = "dead letters")
@ExecuteOn(TaskExecutors.BLOCKING)
public class DeadLetterController {
    private final TaskService service;

    public DeadLetterController(TaskService service) {
        this.service = service;
    }

    @Operation(operationId = "listDeadLetters", summary = "List the tenant's dead letters",
            parameters = @Parameter(name = "limit", in = ParameterIn.QUERY, example = "50",
                    description = "letters at most; 1 to 500 (values " + "outside are clamped), default 50",
                    schema = @Schema(type = "integer", defaultValue = "50")),
            description = "Jobs that ran out of attempts (or could not run), newest first.")
    @ApiResponse(responseCode = "200", description = "The letters",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Letters.class),
                    examples = @ExampleObject(name = "one letter", value = """
                            {"dead_letters": [{"id": "1718000000000-0", "task_id": "0b8f2c1e-6a4d-4c1e-9a57-3f1d2b6c8e90", \
                            "agent": "claude-code", "attempt": "3", "reason": "RateLimitError: retries exhausted", \
                            "stream": "kage:jobs:{claude-code}:normal"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @Get(produces = MediaType.APPLICATION_JSON)
    public Letters list(HttpRequest<?> request, @Parameter(hidden = true) @Nullable @QueryValue Integer limit) {
        int n = limit == null ? 50 : Math.max(1, Math.min(limit, 500));
        return new Letters(service.deadLetters(tenant(request), n).stream().map(DeadLetterController::view).toList());
    }

    /** 202 with the job as enqueued again; 404 for an unknown (or another tenant's, or already replayed) letter. */
    @Operation(operationId = "replayDeadLetter", summary = "Replay a dead letter",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "id", in = ParameterIn.PATH,
                    example = "1718000000000-0", description = "the letter's id"),
            description = "Puts the job back on its stream as a new attempt (once, however often it is called) and reopens "
                    + "its task. No body.")
    @ApiResponse(responseCode = "202", description = "Enqueued again",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Replayed.class),
                    examples = @ExampleObject(name = "replayed", value = """
                            {"dead_letter_id": "1718000000000-0", "task_id": "0b8f2c1e-6a4d-4c1e-9a57-3f1d2b6c8e90", \
                            "agent": "claude-code", "attempt": 4}""")))
    @ApiResponse(responseCode = "404", description = "No such letter for this key's tenant, or already replayed",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no dead letter 1718000000000-0 to replay for this API key", \
                    "errors": []}""")))
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @Post(value = "/{id}/replay", consumes = MediaType.ALL, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> replay(HttpRequest<?> request, @PathVariable String id) {
        // Not an entry id Redis could hold (e.g. beyond 64 bits, which Redis refuses as an error, a false 503): no letter.
        Optional<String> entryId = dev.kage.coordinator.events.StreamIds.parse(id);
        if (entryId.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no dead letter " + id));
        }
        Optional<JobMessage> job = service.replay(tenant(request), entryId.get());
        if (job.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no dead letter " + id + " to replay for this API key"));
        }
        return HttpResponse.status(HttpStatus.ACCEPTED).body(new Replayed(id, job.get().taskId(), job.get().agent(),
                job.get().attempt()));
    }

    private static Letter view(DeadLetter letter) {
        var f = letter.fields();
        return new Letter(letter.id(), f.get("task_id"), f.get("agent"), f.get("attempt"), letter.reason(), f.get("dead_from_stream"));
    }

    private static String tenant(HttpRequest<?> request) {
        return request.getAttribute(ApiKeyFilter.TENANT, String.class).orElseThrow();
    }

    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Letters(List<Letter> deadLetters) {
    }

    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Letter(String id, String taskId, String agent, String attempt, String reason, String stream) {
    }

    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Replayed(String deadLetterId, String taskId, String agent, int attempt) {
    }
}
