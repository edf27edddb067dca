package dev.kage.coordinator.limits;

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
import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.coordinator.api.JsonBodies;
import dev.kage.coordinator.task.InvalidRequestException;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.ratelimit.FleetRateLimiter.LimitState;
import dev.kage.ratelimit.Limit;
import dev.kage.task.Priority;
import io.micronaut.core.annotation.Nullable;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Body;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Delete;
import io.micronaut.http.annotation.Get;
import io.micronaut.http.annotation.PathVariable;
import io.micronaut.http.annotation.Put;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The fleet's rate limits: {@code GET /api/v1/limits}, {@code GET|PUT|DELETE /api/v1/limits/{agent}}
 * ({@code {agent}} is an agent or a limit group). A change applies to every worker at once, keeps the
 * permits already granted (no burst) and stays in force over worker restarts until it is deleted.
 * Reading needs scope {@code read}; changing needs scope {@code admin}.
 */
@Controller("/api/v1/limits")
@Tag(name = "limits")
@ExecuteOn(TaskExecutors.BLOCKING)
public class LimitsController {
    private static final Set<String> FIELDS = Set.of("requests", "window_seconds", "tokens", "guard_ms");

    private final FleetRateLimiter limiter;
    private final dev.kage.store.LimitOverrideStore overrides;
    private final AgentCatalog catalog;
    private final KageSettings settings;
    public LimitsController(FleetRateLimiter limiter, AgentCatalog catalog, KageSettings settings,
                            dev.kage.store.LimitOverrideStore overrides) {
        this.overrides = overrides;
        this.limiter = limiter;
        this.catalog = catalog;
        this.settings = settings;
    }

    @Operation(operationId = "listLimits", summary = "Every limit group",
            description = "Configured and current limits, the rate after adaptive decreases, use in the current window, "
                    + "cooldown after a 429 and the jobs waiting per priority.")
    @ApiResponse(responseCode = "200", description = "The groups",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Limits.class),
                    examples = @ExampleObject(name = "groups", value = """
                            {"limits": [{"group": "anthropic", "agents": ["claude-code"], \
                            "configured": {"requests": 50, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, \
                            "current": {"requests": 40, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, "source": "api", \
                            "effective": 40, "used": 7, "tokens_used": 0, "cooldown_ms": 0, "waiting": {"high": 0, "normal": 2, "low": 0}}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(produces = MediaType.APPLICATION_JSON)
    public Limits list() {
        Map<String, Limit> configured = catalog.limitGroups(settings.rateLimit());
        Set<String> groups = new LinkedHashSet<>(configured.keySet());
        groups.addAll(limiter.groups());
        List<LimitView> views = new ArrayList<>();
        for (String group : groups.stream().sorted().toList()) {
            views.add(view(group, configured.get(group)));
        }
        return new Limits(views);
    }

    @Operation(operationId = "getLimit", summary = "One limit group", description = "By agent or group name.",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "agent", in = ParameterIn.PATH,
                    example = "claude-code", description = "an agent or a limit group"))
    @ApiResponse(responseCode = "200", description = "The group",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = LimitView.class),
                    examples = @ExampleObject(name = "group", value = """
                            {"group": "anthropic", "agents": ["claude-code"], \
                            "configured": {"requests": 50, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, \
                            "current": {"requests": 40, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, "source": "api", \
                            "effective": 40, "used": 7, "tokens_used": 0, "cooldown_ms": 0, "waiting": {"high": 0, "normal": 2, "low": 0}}""")))
    @ApiResponse(responseCode = "404", description = "No agent or limit group by that name",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no agent or limit group named 'claud'", "errors": []}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(value = "/{agent}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> get(@PathVariable String agent) {
        Optional<String> group = group(agent);
        if (group.isEmpty()) {
            return unknown(agent);
        }
        return HttpResponse.ok(view(group.get(), catalog.limitGroups(settings.rateLimit()).get(group.get())));
    }

    /**
     * Changes the limit for the whole fleet. The body names any of {@code requests}, {@code window_seconds},
     * {@code tokens}, {@code guard_ms}; the others keep their current values.
     */
    @Operation(operationId = "setLimit", summary = "Change a limit for the whole fleet",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "agent", in = ParameterIn.PATH,
                    example = "claude-code", description = "an agent or a limit group"),
            description = "Any of the fields; the others keep their values. Applies to every worker at once, keeps the "
                    + "calls already made in the window (no fresh burst), and stays until deleted.",
            requestBody = @RequestBody(required = true, content = @Content(mediaType = MediaType.APPLICATION_JSON,
                    schema = @Schema(implementation = LimitChange.class), examples = @ExampleObject(name = "40 a minute", value = """
                            {"requests": 40, "window_seconds": 60}"""))))
    @ApiResponse(responseCode = "200", description = "The group under the new limit",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = LimitView.class),
                    examples = @ExampleObject(name = "group", value = """
                            {"group": "anthropic", "agents": ["claude-code"], \
                            "configured": {"requests": 50, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, \
                            "current": {"requests": 40, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, "source": "api", \
                            "effective": 40, "used": 7, "tokens_used": 0, "cooldown_ms": 0, "waiting": {"high": 0, "normal": 2, "low": 0}}""")))
    @ApiResponse(responseCode = "400", description = "A bad field, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "field", value = """
                    {"error": "validation_failed", "message": "the request is invalid: requests", \
                    "errors": [{"field": "requests", "message": "must be an integer from 1 to 1000000000"}]}""")))
    @ApiResponse(responseCode = "404", description = "No agent or limit group by that name",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no agent or limit group named 'claud'", "errors": []}""")))
    @ApiResponse(responseCode = "409", description = "The group has no limit stored or configured any more",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "no limit", value = """
                    {"error": "conflict", "message": "limit group old-group has no limit stored or configured any more; \
                    configure it in the agents file", "errors": []}""")))
    @ApiDocs.BodyTooLarge
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @Put(value = "/{agent}", consumes = {MediaType.APPLICATION_JSON, MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> put(HttpRequest<?> request, @PathVariable String agent,
                               @Parameter(hidden = true) @Nullable @Body byte[] body) {
        Optional<HttpResponse<?>> refused = refuseChange(request, agent);
        if (refused.isPresent()) {
            return refused.get();
        }
        String group = group(agent).orElseThrow();
        Limit configured = catalog.limitGroups(settings.rateLimit()).get(group);
        // The body's fields are checked before the group's lock is waited for (ranges do not depend on the limit in
        // force): a bad one is a 400 at once, not a 503 while the group is busy or Postgres away.
        parse(body, configured != null ? configured : new Limit(1, Duration.ofSeconds(1), 0, Duration.ZERO));
        // One change of the group at a time, from any coordinator: the limit read here is still the one in force when
        // both copies are written (a partial body changes only its fields of it).
        return overrides.<HttpResponse<?>>changing(group, change -> {
            Limit current = limiter.state(group).map(LimitState::limit).orElse(configured);
            if (current == null) {
                return HttpResponse.status(HttpStatus.CONFLICT).body(ErrorBody.of("conflict", "limit group " + group
                        + " has no limit stored or configured any more; configure it in the agents file"));
            }
            Limit next = parse(body, current);
            Optional<Limit> before = change.stored();
            // Postgres first: the change outlives a Redis that loses its data (the reconciler writes it back).
            change.save(next);
            try {
                limiter.override(group, next);
            } catch (RuntimeException e) {
                // Not in force (the caller gets an error): not kept either, or a later Redis restart would bring it in.
                putBack(change, before, e);
                throw e;
            }
            return HttpResponse.ok(view(group, configured));
        });
    }

    /** Drops the runtime change: back to the agents' configuration. */
    @Operation(operationId = "resetLimit", summary = "Drop a runtime change",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "agent", in = ParameterIn.PATH,
                    example = "claude-code", description = "an agent or a limit group"),
            description = "Back to the agents' configuration.")
    @ApiResponse(responseCode = "200", description = "The group under its configured limit",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = LimitView.class),
                    examples = @ExampleObject(name = "group", value = """
                            {"group": "anthropic", "agents": ["claude-code"], \
                            "configured": {"requests": 50, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, \
                            "current": {"requests": 50, "window_seconds": 60.0, "tokens": 0, "guard_ms": 0}, "source": "config", \
                            "effective": 40, "used": 7, "tokens_used": 0, "cooldown_ms": 0, "waiting": {"high": 0, "normal": 2, "low": 0}}""")))
    @ApiResponse(responseCode = "404", description = "No agent or limit group by that name",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no agent or limit group named 'claud'", "errors": []}""")))
    @ApiResponse(responseCode = "409", description = "The group has no configured limit to return to",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "no configured limit", value = """
                    {"error": "conflict", "message": "limit group ops-made has no configured limit to return to; \
                    change it with PUT instead", "errors": []}""")))
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Delete(value = "/{agent}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> reset(HttpRequest<?> request, @PathVariable String agent) {
        Optional<HttpResponse<?>> refused = refuseChange(request, agent);
        if (refused.isPresent()) {
            return refused.get();
        }
        Optional<String> group = group(agent);
        Limit configured = catalog.limitGroups(settings.rateLimit()).get(group.get());
        if (configured == null) {
            return HttpResponse.status(HttpStatus.CONFLICT).body(ErrorBody.of("conflict", "limit group " + group.get()
                    + " has no configured limit to return to; change it with PUT instead"));
        }
        return overrides.<HttpResponse<?>>changing(group.get(), change -> {
            Optional<Limit> before = change.stored();
            change.delete();
            try {
                limiter.reset(group.get(), configured);
            } catch (RuntimeException e) {
                // Still in force in Redis (the caller gets an error): still kept, as it was.
                putBack(change, before, e);
                throw e;
            }
            return HttpResponse.ok(view(group.get(), configured));
        });
    }

    /**
     * After Redis refused a change: Postgres's copy back as it was before it ({@code before}, or none), so that the two
     * still agree. A failure of that is added to {@code failure}, which the caller answers.
     */
    private static void putBack(dev.kage.store.LimitOverrideStore.Change change, Optional<Limit> before, RuntimeException failure) {
        try {
            if (before.isPresent()) {
                change.save(before.get());
            } else {
                change.delete();
            }
        } catch (RuntimeException alsoPostgres) {
            failure.addSuppressed(alsoPostgres);
        }
    }

    /** Why a change may not go ahead: 404 for an unknown agent or group (scope {@code admin} is the filter's). */
    private Optional<HttpResponse<?>> refuseChange(HttpRequest<?> request, String agent) {
        return group(agent).isEmpty() ? Optional.of(unknown(agent)) : Optional.empty();
    }

    /** An agent's group, or a group by its own name. */
    private Optional<String> group(String name) {
        Optional<AgentConfig> agent = catalog.find(name);
        if (agent.isPresent()) {
            return Optional.of(agent.get().limits().group());
        }
        if (catalog.limitGroups(settings.rateLimit()).containsKey(name) || limiter.groups().contains(name)) {
            return Optional.of(name);
        }
        return Optional.empty();
    }

    private static HttpResponse<?> unknown(String agent) {
        return HttpResponse.notFound(ErrorBody.of("not_found", "no agent or limit group named '" + dev.kage.coordinator.api.ErrorBody.printable(agent) + "'"));
    }

    private LimitView view(String group, Limit configured) {
        List<String> agents = catalog.names().stream().filter(n -> catalog.require(n).limits().group().equals(group)).toList();
        Optional<LimitState> state = limiter.state(group);
        LimitSpec spec = state.map(s -> LimitSpec.of(s.limit())).orElse(configured == null ? null : LimitSpec.of(configured));
        return new LimitView(group, agents, configured == null ? null : LimitSpec.of(configured), spec,
                state.map(LimitState::source).orElse("config"), state.map(LimitState::effective).orElse(spec == null ? 0 : spec.requests()),
                state.map(LimitState::used).orElse(0L), state.map(LimitState::tokensUsed).orElse(0L),
                state.map(s -> s.cooldown().toMillis()).orElse(0L),
                state.map(s -> Map.of("high", s.waiting().get(Priority.HIGH), "normal", s.waiting().get(Priority.NORMAL),
                        "low", s.waiting().get(Priority.LOW))).orElse(Map.of("high", 0L, "normal", 0L, "low", 0L)));
    }

    private static Limit parse(byte[] body, Limit current) {
        List<FieldError> errors = new ArrayList<>();
        JsonNode root = JsonBodies.object(body, FIELDS, errors);
        long requests = integer(root, "requests", 1, 1_000_000_000L, current.requests(), errors);
        // At most 10^15: the limiter's scripts count tokens in Lua numbers (doubles), exact only up to 2^53 (~9 * 10^15).
        long tokens = integer(root, "tokens", 0, MAX_TOKENS, current.tokens(), errors);
        long guardMs = integer(root, "guard_ms", 0, 60_000, current.guard().toMillis(), errors);
        Duration window = current.window();
        JsonNode w = root.get("window_seconds");
        if (w != null) {
            if (!w.isNumber() || w.asDouble() < 0.001 || w.asDouble() > 86_400) {
                errors.add(new FieldError("window_seconds", "must be a number of seconds from 0.001 to 86400"));
            } else {
                window = Duration.ofMillis(Math.round(w.asDouble() * 1000));
            }
        }
        if (!errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
        if (root.get("guard_ms") == null && !window.equals(current.window())
                && current.guard().equals(Limit.defaultGuard(current.window()))) {
            // The guard followed the old window (2.5 % of it): it follows the new one. Kept, a 60 s window's 1 s guard
            // held each permit of a new 1 s window for 2 s and halved its rate.
            guardMs = Limit.defaultGuard(window).toMillis();
        }
        return new Limit(requests, window, tokens, Duration.ofMillis(guardMs));
    }

    /** Tokens per window a limit may have. */
    static final long MAX_TOKENS = 1_000_000_000_000_000L;

    private static long integer(JsonNode root, String field, long min, long max, long current, List<FieldError> errors) {
        JsonNode value = root.get(field);
        if (value == null) {
            return current;
        }
        if (!value.isIntegralNumber() || !value.canConvertToLong() || value.asLong() < min || value.asLong() > max) {
            errors.add(new FieldError(field, "must be an integer from " + min + " to " + max));
            return current;
        }
        return value.asLong();
    }

    /**
     * The {@code PUT} body, for the OpenAPI document only ({@link #parse} reads the bytes by hand).
     *
     * @param requests      calls per window, 1 to 1,000,000,000
     * @param windowSeconds the window, 0.001 to 86400 seconds
     * @param tokens        tokens per window, 0 for no token limit, at most 10^15
     * @param guardMs       milliseconds a permit is held past its window (0 to 60000); left out while the window changes, a
     *                      guard that was the default for the old window becomes the default for the new one
     */
    @Schema(name = "RateLimitChange")
    record LimitChange(@Nullable Long requests, @Nullable Double windowSeconds, @Nullable Long tokens, @Nullable Long guardMs) {
    }

    /** A limit as the API shows it. */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record LimitSpec(long requests, double windowSeconds, long tokens, long guardMs) {
        static LimitSpec of(Limit limit) {
            return new LimitSpec(limit.requests(), limit.window().toMillis() / 1000.0, limit.tokens(), limit.guard().toMillis());
        }
    }

    /**
     * One limit group as the fleet sees it now.
     *
     * @param configured what the agents' configuration says, null for a group only an operator created
     * @param current    what is in force for the whole fleet
     * @param source     {@code config} or {@code api} (an operator's runtime change)
     * @param effective  requests per window after adaptive decreases (429s, quota headers); recovers by a tenth per window
     * @param used       requests granted in the current window
     * @param cooldownMs how long the group stays paused fleet-wide after a 429, 0 when it is not
     * @param waiting    jobs waiting for a permit, per priority
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record LimitView(String group, List<String> agents, @Nullable LimitSpec configured, @Nullable LimitSpec current,
                            String source, long effective, long used, long tokensUsed, long cooldownMs, Map<String, Long> waiting) {
    }

    @Serdeable
    public record Limits(List<LimitView> limits) {
    }
}
