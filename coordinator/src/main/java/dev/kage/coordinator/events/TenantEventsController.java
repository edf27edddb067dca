package dev.kage.coordinator.events;

import dev.kage.coordinator.api.ApiDocs;
import dev.kage.coordinator.api.ErrorBody;
import io.swagger.v3.oas.annotations.Operation;
import io.swagger.v3.oas.annotations.Parameter;
import io.swagger.v3.oas.annotations.enums.ParameterIn;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import io.swagger.v3.oas.annotations.tags.Tag;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import dev.kage.redis.KageKeys;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Get;
import io.micronaut.http.sse.Event;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import java.time.Duration;
import java.util.Optional;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * {@code GET /api/v1/events}: every lifecycle event of the caller's tenant, live, as server-sent events — what a
 * dashboard or {@code kage watch} follows instead of one stream per task. Events without a tenant (fleet-wide
 * ones) and other tenants' events are never sent. It starts with the events published after the request; a
 * {@code Last-Event-ID} (sent by {@code EventSource} on reconnect) first replays the tenant's events after that id
 * that are still in {@code kage:events}, the newest {@value #MAX_REPLAY} when there are more. A comment is sent at once (so the answer's
 * headers leave before the first event) and every 15 s (so proxies do not close a quiet stream); the stream ends only
 * when the client goes.
 */
@Tag(name = "tasks")
@Controller("/api/v1/events")
public class TenantEventsController {
    /** Past events a resuming client gets at most: the newest this many. */
    public static final int MAX_REPLAY = 10_000;

    private final RedisCommands<String, String> redis;
    private final KageKeys keys;
    private final EventHub hub;
    private final Duration heartbeat;
    private final reactor.core.scheduler.Scheduler blocking;
    private final dev.kage.coordinator.auth.KeyAuthenticator apiKeys;

    /**
     * @param heartbeat how often a keep-alive comment is sent ({@code kage.events.keep-alive}, default 15 s); each one also
     *                  checks that the stream's API key has not been revoked
     */
    public TenantEventsController(RedisCommands<String, String> redis, KageKeys keys, EventHub hub,
                                  @io.micronaut.context.annotation.Value("${kage.events.keep-alive:15s}") Duration heartbeat,
                                  @jakarta.inject.Named(TaskExecutors.BLOCKING) java.util.concurrent.ExecutorService blocking,
                                  dev.kage.coordinator.auth.KeyAuthenticator apiKeys) {
        this.redis = redis;
        this.keys = keys;
        this.hub = hub;
        this.heartbeat = heartbeat;
        this.blocking = reactor.core.scheduler.Schedulers.fromExecutorService(blocking);
        this.apiKeys = apiKeys;
    }

    @Operation(operationId = "tenantEvents", summary = "Follow every event of the caller's tenant (server-sent events)",
            parameters = @Parameter(name = TaskEventsController.LAST_EVENT_ID, in = ParameterIn.HEADER, example = "1718000000000-0",
                    schema = @Schema(type = "string"),
                    description = "first replay the tenant's events after this one (sent by EventSource on reconnect)"),
            description = """
                    Every lifecycle event of the caller's tenant from now on (other tenants' and fleet-wide events are never \
                    sent), in the shape of a task's stream. A `stream.connected` event comes at once: its id is where the \
                    stream starts (keep it as `Last-Event-ID`), and `"complete": "false"` says events before it may be \
                    missing (a first connection, or a `Last-Event-ID` the capped stream trimmed since): read the tasks \
                    again then. `: keep-alive` comes every 15 s; the stream never ends by itself.""")
    @ApiResponse(responseCode = "200", description = "The event stream",
            content = @Content(mediaType = MediaType.TEXT_EVENT_STREAM, schema = @Schema(type = "string"),
                    examples = @ExampleObject(name = "events", value = """
                            id: 1718000071839-0
                            event: stream.connected
                            data: {"type":"stream.connected","tenant":"acme","complete":"false"}

                            id: 1718000071840-0
                            event: job.started
                            data: {"type":"job.started","task_id":"019ad735-8400-7c1e-9a57-3f1d2b6c8e90","tenant":"acme",\
                            "agent":"claude-code","worker":"w-1"}
                            """)))
    @ApiResponse(responseCode = "400", description = "`Last-Event-ID` is not an event id",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "Last-Event-ID", value = """
                    {"error": "validation_failed", "message": "the request is invalid: Last-Event-ID is not an event id", \
                    "errors": [{"field": "Last-Event-ID", "message": "'yesterday' is not an id this stream sent, e.g. 1718000000000-0"}]}""")))
    @ApiDocs.TooManyStreams
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @Get(produces = {MediaType.TEXT_EVENT_STREAM, MediaType.APPLICATION_JSON})
    @ExecuteOn(TaskExecutors.BLOCKING)
    public HttpResponse<?> events(HttpRequest<?> request) {
        String tenant = request.getAttribute(ApiKeyFilter.TENANT, String.class)
                .orElseThrow(() -> new IllegalStateException("ApiKeyFilter did not run for " + request.getPath()));
        String resumeText = dev.kage.coordinator.api.SingleHeader.of(request, TaskEventsController.LAST_EVENT_ID);
        boolean resuming = resumeText != null && !resumeText.isBlank();
        Optional<String> resumeAfter = resuming ? StreamIds.parse(resumeText) : Optional.empty();
        if (resuming && resumeAfter.isEmpty()) {
            return EventReplay.badLastEventId(resumeText);
        }
        // Subscribe before reading the past, so an event published in between is buffered, not lost.
        EventHub.Subscription live = hub.subscribe(tenant, e -> tenant.equals(e.tenant()));
        Flux<StreamEvent> events;
        StreamEvent connected;
        if (resumeAfter.isPresent()) {
            EventReplay.Replay past;
            try {
                past = EventReplay.read(redis, keys, e -> tenant.equals(e.tenant()), resumeAfter.get(), MAX_REPLAY);
            } catch (RuntimeException e) {
                live.close();
                throw e;
            }
            events = Flux.concat(Flux.fromIterable(past.events()),
                    live.events().filter(e -> StreamIds.compare(e.id(), past.position()) > 0));
            connected = connected(resumeAfter.get(), tenant, past.complete());
        } else {
            // From now on, exactly: the hub may still be dispatching events published before this request.
            String now;
            try {
                now = EventReplay.newest(redis, keys);
            } catch (RuntimeException e) {
                live.close();
                throw e;
            }
            events = live.events().filter(e -> StreamIds.compare(e.id(), now) > 0);
            connected = connected(now, tenant, false);
        }
        // A key revoked meanwhile ends the stream at the next keep-alive: it never ends by itself otherwise.
        dev.kage.coordinator.auth.Principal principal = ApiKeyFilter.principal(request);
        Flux<Event<String>> keepAlive = KeepAlive.of(heartbeat, blocking, () -> apiKeys.stillActive(principal), true,
                active -> active ? Flux.empty() : Flux.just(TaskEventsController.END));
        // The connected event first: the response's headers leave with its bytes (a quiet tenant has no other event to
        // send), and its id is where the stream starts.
        Flux<Event<String>> body = Flux.merge(Flux.concat(Mono.just(TaskEventsController.sse(connected)),
                                events.map(TaskEventsController::sse)),
                        keepAlive)
                .takeWhile(event -> event != TaskEventsController.END)
                .doFinally(signal -> live.close());
        return HttpResponse.ok(body).contentType(MediaType.TEXT_EVENT_STREAM_TYPE);
    }

    /**
     * The stream's first event. Its id is where the stream starts: the client's own {@code Last-Event-ID} when it resumes,
     * else the newest entry when it connected (a client that keeps it resumes from there, where a reconnect before any
     * event started "from now" again and lost what happened in between). {@code complete} is false when events before
     * it may be missing: a first connection (a client lists the tasks after it), or a resume the replay cannot cover.
     */
    private static StreamEvent connected(String position, String tenant, boolean complete) {
        java.util.Map<String, String> fields = new java.util.LinkedHashMap<>();
        fields.put("type", "stream.connected");
        fields.put("tenant", tenant);
        fields.put("complete", Boolean.toString(complete));
        return new StreamEvent(position, fields);
    }
}
