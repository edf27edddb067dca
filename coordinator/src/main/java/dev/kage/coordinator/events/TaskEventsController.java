package dev.kage.coordinator.events;

import dev.kage.coordinator.api.ApiDocs;
import io.swagger.v3.oas.annotations.Operation;
import io.swagger.v3.oas.annotations.Parameter;
import io.swagger.v3.oas.annotations.enums.ParameterIn;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import io.swagger.v3.oas.annotations.tags.Tag;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.redis.KageKeys;
import dev.kage.store.TaskStore;
import dev.kage.task.TaskRecord;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Get;
import io.micronaut.http.annotation.PathVariable;
import io.micronaut.http.sse.Event;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import java.time.Duration;
import java.util.Optional;
import java.util.UUID;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * {@code GET /api/v1/tasks/{id}/events}: the task's lifecycle as server-sent events. First the task's past
 * events still in {@code kage:events} (after {@code Last-Event-ID} when the client resumes), then live ones
 * from the {@link EventHub}. Each SSE event is named by the event's {@code type}, carries its fields as a
 * JSON object and the stream entry id as its id. The stream ends after the event that ends the task, or
 * right after the replay when the task had already ended. A comment line every 15 s keeps proxies from
 * closing a quiet stream.
 */
@Controller("/api/v1/tasks")
@Tag(name = "tasks")
public class TaskEventsController {
    public static final String LAST_EVENT_ID = "Last-Event-ID";

    private static final ObjectMapper JSON = new ObjectMapper();
    // Marks the end of the task's events inside the merge with heartbeats; compared by identity.
    static final Event<String> END = Event.of("");

    private final TaskStore store;
    private final RedisCommands<String, String> redis;
    private final KageKeys keys;
    private final EventHub hub;
    private final Duration heartbeat;
    private final dev.kage.coordinator.auth.KeyAuthenticator apiKeys;
    private final reactor.core.scheduler.Scheduler blocking;

    /**
     * @param heartbeat how often a keep-alive comment is sent ({@code kage.events.keep-alive}, default 15 s); each one
     *                  also asks Postgres whether the task has ended and the key is still good ({@link KeepAlive})
     */
    public TaskEventsController(TaskStore store, RedisCommands<String, String> redis, KageKeys keys, EventHub hub,
                                @io.micronaut.context.annotation.Value("${kage.events.keep-alive:15s}") Duration heartbeat,
                                @jakarta.inject.Named(TaskExecutors.BLOCKING) java.util.concurrent.ExecutorService blocking,
                                dev.kage.coordinator.auth.KeyAuthenticator apiKeys) {
        this.apiKeys = apiKeys;
        this.store = store;
        this.redis = redis;
        this.keys = keys;
        this.hub = hub;
        this.heartbeat = heartbeat;
        this.blocking = reactor.core.scheduler.Schedulers.fromExecutorService(blocking);
    }

    @Operation(operationId = "taskEvents", summary = "Follow a task's events (server-sent events)",
            parameters = {
                    @Parameter(schema = @Schema(type = "string"), name = "id", in = ParameterIn.PATH,
                            example = "019ad735-8400-7c1e-9a57-3f1d2b6c8e90", description = "the task id"),
                    @Parameter(name = LAST_EVENT_ID, in = ParameterIn.HEADER, example = "1718000000000-0",
                            schema = @Schema(type = "string"),
                            description = "resume after this event (sent by EventSource on reconnect)")
            },
            description = """
                    First the task's past events still in `kage:events`, then live ones. Each event is named by its type \
                    (`task.submitted`, `job.started`, `job.finished`, `budget.warning`, `task.cancelled`, ...), has the \
                    stream entry id as `id` and the event's fields as a JSON object as `data`. The stream ends after the \
                    event that ends the task, or right after the past events when it had already ended. A `: keep-alive` \
                    comment comes every 15 s.""")
    @ApiResponse(responseCode = "200", description = "The event stream",
            content = @Content(mediaType = MediaType.TEXT_EVENT_STREAM, schema = @Schema(type = "string"),
                    examples = @ExampleObject(name = "events", value = """
                            id: 1718000000000-0
                            event: task.submitted
                            data: {"type":"task.submitted","task_id":"019ad735-8400-7c1e-9a57-3f1d2b6c8e90","tenant":"acme"}

                            id: 1718000071840-0
                            event: job.finished
                            data: {"type":"job.finished","task_id":"019ad735-8400-7c1e-9a57-3f1d2b6c8e90","agent":"claude-code",\
                            "status":"completed","task_status":"completed"}
                            """)))
    @ApiResponse(responseCode = "400", description = "`Last-Event-ID` is not an event id",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "Last-Event-ID", value = """
                    {"error": "validation_failed", "message": "the request is invalid: Last-Event-ID is not an event id", \
                    "errors": [{"field": "Last-Event-ID", "message": "'yesterday' is not an id this stream sent, e.g. 1718000000000-0"}]}""")))
    @ApiResponse(responseCode = "404", description = "No such task for this key's tenant (another tenant's task too)",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no task 019ad735-8400-7c1e-9a57-3f1d2b6c8e90 for this API key", \
                    "errors": []}""")))
    @ApiDocs.TooManyStreams
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @Get(value = "/{id}/events", produces = {MediaType.TEXT_EVENT_STREAM, MediaType.APPLICATION_JSON})
    @ExecuteOn(TaskExecutors.BLOCKING)
    public HttpResponse<?> events(HttpRequest<?> request, @PathVariable String id) {
        String tenant = request.getAttribute(ApiKeyFilter.TENANT, String.class)
                .orElseThrow(() -> new IllegalStateException("ApiKeyFilter did not run for " + request.getPath()));
        Optional<TaskRecord> found = parseId(id).flatMap(uuid -> store.find(tenant, uuid));
        if (found.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no task " + dev.kage.coordinator.api.ErrorBody.printable(id) + " for this API key"))
                    .contentType(MediaType.APPLICATION_JSON_TYPE);
        }
        String resumeText = dev.kage.coordinator.api.SingleHeader.of(request, LAST_EVENT_ID);
        Optional<String> resumeAfter = resumeText == null || resumeText.isBlank() ? Optional.empty() : StreamIds.parse(resumeText);
        if (resumeText != null && !resumeText.isBlank() && resumeAfter.isEmpty()) {
            return EventReplay.badLastEventId(resumeText);
        }
        TaskRecord task = found.get();
        String taskId = task.id().toString();

        // Subscribe before reading the past, so an event published in between is buffered, not lost.
        EventHub.Subscription live = hub.subscribe(tenant, e -> taskId.equals(e.taskId()) && sameTenant(e, tenant));
        EventReplay.Replay replay;
        try {
            java.util.function.Predicate<StreamEvent> wanted = e -> taskId.equals(e.taskId()) && sameTenant(e, tenant);
            replay = resumeAfter.isPresent() ? EventReplay.read(redis, keys, wanted, resumeAfter.get(), Integer.MAX_VALUE)
                    : EventReplay.readTask(redis, keys, wanted, task.createdAt());
        } catch (RuntimeException e) {
            live.close();
            throw e;
        }
        Flux<StreamEvent> events;
        if (task.status().isFinal()) {
            live.close();
            events = Flux.fromIterable(replay.events());
        } else {
            events = Flux.concat(Flux.fromIterable(replay.events()),
                    live.events().filter(e -> StreamIds.compare(e.id(), replay.position()) > 0));
        }
        // Each keep-alive also asks Postgres: a task whose ending event never comes (a Redis that lost it, a worker that
        // died between its row and its event) ends the stream once Postgres has said so at two keep-alives in a row (the
        // event, when it comes, comes first), with a task.ended event naming its status.
        // A key revoked meanwhile ends the stream at the next keep-alive.
        dev.kage.coordinator.auth.Principal principal = ApiKeyFilter.principal(request);
        java.util.concurrent.atomic.AtomicBoolean endedBefore = new java.util.concurrent.atomic.AtomicBoolean();
        Flux<Event<String>> keepAlive = KeepAlive.of(heartbeat, blocking, () -> apiKeys.stillActive(principal)
                        ? new Tick(true, store.find(tenant, task.id()).map(TaskRecord::status).filter(dev.kage.task.TaskStatus::isFinal))
                        : new Tick(false, Optional.empty()), Tick.UNKNOWN,
                checked -> {
                    if (!checked.keyActive()) {
                        return Flux.just(END);
                    }
                    Optional<dev.kage.task.TaskStatus> status = checked.ended();
                    if (status.isPresent() && endedBefore.getAndSet(true)) {
                        return Flux.just(Event.of(json(java.util.Map.of("task_id", taskId, "tenant", tenant,
                                "task_status", status.get().wireName()))).name(TASK_ENDED), END);
                    }
                    endedBefore.set(status.isPresent());
                    return Flux.empty();
                });
        Flux<Event<String>> body = Flux.merge(
                        events.takeUntil(StreamEvent::endsTask).map(TaskEventsController::sse).concatWith(Mono.just(END)),
                        keepAlive)
                .takeWhile(event -> event != END)
                .doFinally(signal -> live.close());
        return HttpResponse.ok(body).contentType(MediaType.TEXT_EVENT_STREAM_TYPE);
    }

    /** What a keep-alive found: whether the stream's key is still good, and the task's status when it has ended. */
    private record Tick(boolean keyActive, Optional<dev.kage.task.TaskStatus> ended) {
        /** Nothing known (Postgres did not answer in time): the stream goes on. */
        static final Tick UNKNOWN = new Tick(true, Optional.empty());
    }


    /** The event that ends a stream whose task ended without an event saying so (its keep-alive asked Postgres). */
    static final String TASK_ENDED = "task.ended";

    static Event<String> sse(StreamEvent event) {
        return Event.of(json(event.fields())).name(event.type()).id(event.id());
    }

    private static String json(java.util.Map<String, String> fields) {
        try {
            return JSON.writeValueAsString(fields);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("a map of strings is always JSON", e);
        }
    }

    private static boolean sameTenant(StreamEvent event, String tenant) {
        return event.tenant() == null || tenant.equals(event.tenant());
    }

    static Optional<UUID> parseId(String id) {
        try {
            return Optional.of(UUID.fromString(id));
        } catch (IllegalArgumentException e) {
            return Optional.empty();
        }
    }

}
