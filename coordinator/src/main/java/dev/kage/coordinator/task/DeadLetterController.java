package dev.kage.coordinator.task;

import dev.kage.coordinator.api.QueryParameters;
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
import io.micronaut.http.annotation.Delete;
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

/** The caller's dead letters ({@code kage:jobs:dead}): listing, replay (one or many) and discard. */
@Controller("/api/v1/dead-letters")
@Tag(name = "dead letters")
@ExecuteOn(TaskExecutors.BLOCKING)
public class DeadLetterController {
    private final TaskService service;

    public DeadLetterController(TaskService service) {
        this.service = service;
    }

    @Operation(operationId = "listDeadLetters", summary = "List the tenant's dead letters",
            parameters = {@Parameter(name = "limit", in = ParameterIn.QUERY, example = "50",
                    description = "letters at most; 1 to 500 (another value is a 400), default 50",
                    schema = @Schema(type = "integer", defaultValue = "50")),
                    @Parameter(name = "agent", in = ParameterIn.QUERY, example = "claude-code",
                            description = "only this agent's jobs (any name: an agent no longer configured too)",
                            schema = @Schema(type = "string"))},
            description = "Jobs that ran out of attempts (or could not run), newest first.")
    @ApiResponse(responseCode = "200", description = "The letters",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Letters.class),
                    examples = @ExampleObject(name = "one letter", value = """
                            {"dead_letters": [{"id": "1718000000000-0", "task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", \
                            "agent": "claude-code", "attempt": "3", "reason": "RateLimitError: retries exhausted", \
                            "stream": "kage:jobs:{claude-code}:normal"}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @QueryParameters({"limit", "agent"})
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(produces = MediaType.APPLICATION_JSON)
    public Letters list(HttpRequest<?> request, @Parameter(hidden = true) @Nullable @QueryValue String agent) {
        // Refused, not clamped: ?limit=0 answered one letter, ?limit=100000 five hundred, both as if asked for.
        int n = limit(request, 500, 50);
        return new Letters(service.deadLetters(tenant(request), agentFilter(agent), n).stream()
                .map(DeadLetterController::view).toList());
    }

    @Operation(operationId = "replayDeadLetters", summary = "Replay many dead letters at once",
            parameters = {@Parameter(name = "limit", in = ParameterIn.QUERY, example = "100",
                    description = "letters at most: the newest this many, replayed oldest first; 1 to 1000, default 100",
                    schema = @Schema(type = "integer", defaultValue = "100")),
                    @Parameter(name = "agent", in = ParameterIn.QUERY, example = "claude-code",
                            description = "only this agent's jobs", schema = @Schema(type = "string"))},
            description = "Each letter as the single replay does (once, however often this is called). Call again "
                    + "until `replayed` is empty to replay more than `limit`. Letters that are not jobs, and those of "
                    + "cancelled tasks, are passed over (they can only be discarded). No body.")
    @ApiResponse(responseCode = "202", description = "The jobs enqueued again",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = ReplayedMany.class),
                    examples = @ExampleObject(name = "two", value = """
                            {"replayed": [{"dead_letter_id": "1718000000000-0", "task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", \
                            "agent": "claude-code", "attempt": 4}, {"dead_letter_id": "1718000000500-0", \
                            "task_id": "019ad735-8400-7c1f-8e7f-90a1b2c3d4e5", "agent": "claude-code", "attempt": 2}]}""")))
    @ApiResponse(responseCode = "400", description = "A bad query parameter, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "limit", value = """
                    {"error": "validation_failed", "message": "the request is invalid: limit", \
                    "errors": [{"field": "limit", "message": "must be a whole number from 1 to 1000 (default 100)"}]}""")))
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @QueryParameters({"limit", "agent"})
    @Post(value = "/replay", consumes = MediaType.ALL, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<ReplayedMany> replayMany(HttpRequest<?> request) {
        int limit = limit(request, 1000, 100);
        String agent = agentFilter(request.getParameters().get("agent"));
        List<Replayed> replayed = service.replayDeadLetters(tenant(request), agent, limit).stream()
                .map(e -> new Replayed(e.getKey(), e.getValue().taskId(), e.getValue().agent(), e.getValue().attempt()))
                .toList();
        return HttpResponse.status(HttpStatus.ACCEPTED).body(new ReplayedMany(replayed));
    }

    /**
     * The {@code limit} query parameter: 1 to {@code max}, {@code defaultValue} when absent.
     *
     * @throws InvalidRequestException naming {@code limit} for anything else
     */
    private static int limit(HttpRequest<?> request, int max, int defaultValue) {
        String text = request.getParameters().get("limit");
        if (text == null) {
            return defaultValue;
        }
        int limit;
        try {
            limit = Integer.parseInt(text.strip());
        } catch (NumberFormatException e) {
            limit = 0;
        }
        if (limit < 1 || limit > max) {
            throw new InvalidRequestException(List.of(new ErrorBody.FieldError("limit",
                    "must be a whole number from 1 to " + max + " (default " + defaultValue + ")")));
        }
        return limit;
    }

    /** 200 with the letter removed; 404 for an unknown (or another tenant's, or already replayed or removed) letter. */
    @Operation(operationId = "discardDeadLetter", summary = "Discard a dead letter",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "id", in = ParameterIn.PATH,
                    example = "1718000000000-0", description = "the letter's id"),
            description = "Removes the letter without replaying it: its job stays failed, with its error rows (an event "
                    + "`job.discarded` says so).")
    @ApiResponse(responseCode = "200", description = "The letter removed",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Letter.class),
                    examples = @ExampleObject(name = "discarded", value = """
                            {"id": "1718000000000-0", "task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", \
                            "agent": "claude-code", "attempt": "3", "reason": "delivered 5 times without finishing", \
                            "stream": "kage:jobs:{claude-code}:normal"}""")))
    @ApiResponse(responseCode = "404", description = "No such letter for this key's tenant",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no dead letter 1718000000000-0 for this API key", "errors": []}""")))
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Delete(value = "/{id}", consumes = MediaType.ALL, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> discard(HttpRequest<?> request, @PathVariable String id) {
        Optional<DeadLetter> discarded = dev.kage.coordinator.events.StreamIds.parse(id)
                .flatMap(entryId -> service.discardDeadLetter(tenant(request), entryId));
        if (discarded.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no dead letter " + id + " for this API key"));
        }
        return HttpResponse.ok(view(discarded.get()));
    }

    /** The {@code agent} filter: null for none; a blank or overlong one is a 400. */
    private static String agentFilter(String agent) {
        if (agent == null) {
            return null;
        }
        if (agent.isBlank() || agent.length() > 200) {
            throw new InvalidRequestException(List.of(new ErrorBody.FieldError("agent", "must be an agent's name")));
        }
        return agent;
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
                            {"dead_letter_id": "1718000000000-0", "task_id": "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", \
                            "agent": "claude-code", "attempt": 4}""")))
    @ApiResponse(responseCode = "404", description = "No such letter for this key's tenant, or already replayed",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no dead letter 1718000000000-0 to replay for this API key", \
                    "errors": []}""")))
    @ApiResponse(responseCode = "409", description = "The letter's task was cancelled: its job is not run again",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "cancelled", value = """
                    {"error": "task_cancelled", "message": "dead letter 1718000000000-0 is a job of task \
                    019ad735-8400-7c1e-9a57-3f1d2b6c8e90, which was cancelled: it is not run again (discard the letter)", \
                    "errors": []}""")))
    @ApiResponse(responseCode = "422", description = "The letter is not a job (a poison entry): discard it instead",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "not a job", value = """
                    {"error": "not_a_job", "message": "dead letter 1718000000000-0 is not a job (job field 'attempt' is \
                    not an integer): it cannot be replayed, only discarded", "errors": []}""")))
    @ApiDocs.SubmitErrors
    @RequiresScope(Scope.SUBMIT)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
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

    /** @param replayed the jobs enqueued again, in the order they were */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record ReplayedMany(List<Replayed> replayed) {
    }

    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Replayed(String deadLetterId, String taskId, String agent, int attempt) {
    }
}
