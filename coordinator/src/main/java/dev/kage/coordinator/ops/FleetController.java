package dev.kage.coordinator.ops;

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
import dev.kage.agent.AgentCatalog;
import dev.kage.coordinator.task.ServedAgents;
import dev.kage.coordinator.task.ServedAgents.Worker;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.Depth;
import dev.kage.task.Priority;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Get;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.util.ArrayList;
import java.util.List;

/**
 * The fleet as an operator watches it: {@code GET /api/v1/queues} (per agent and priority: entries, waiting,
 * pending, consumers, oldest age; per agent: delayed; the dead letters) and {@code GET /api/v1/workers} (live
 * heartbeats). Fleet-wide figures, no task data: any key with scope {@code read}, like {@code GET /api/v1/limits}. Redis down →
 * 503 (the shared handler).
 */
@Controller("/api/v1")
@Tag(name = "fleet")
@ExecuteOn(TaskExecutors.BLOCKING)
public class FleetController {
    private final JobQueue queue;
    private final AgentCatalog catalog;
    private final ServedAgents workers;

    public FleetController(JobQueue queue, AgentCatalog catalog, ServedAgents workers) {
        this.queue = queue;
        this.catalog = catalog;
        this.workers = workers;
    }

    @Operation(operationId = "queues", summary = "Queue depths",
            description = "Per configured agent and priority: entries, waiting, pending (delivered, not acknowledged), "
                    + "consumers, age of the oldest; per agent the delayed retries; the dead letters. Fleet-wide, no task data.")
    @ApiResponse(responseCode = "200", description = "The queues",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Queues.class),
                    examples = @ExampleObject(name = "queues", value = """
                            {"agents": [{"agent": "claude-code", "priorities": [{"priority": "high", \
                            "stream": "kage:jobs:{claude-code}:high", "length": 0, "waiting": 0, "pending": 0, "consumers": 2, \
                            "oldest_age_ms": 0}, {"priority": "normal", "stream": "kage:jobs:{claude-code}:normal", "length": 12, \
                            "waiting": 3, "pending": 2, "consumers": 2, "oldest_age_ms": 41250}], "delayed": 1}], "dead": 0}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(value = "/queues", produces = MediaType.APPLICATION_JSON)
    public Queues queues() {
        List<AgentQueues> agents = new ArrayList<>();
        for (String agent : catalog.names().stream().sorted().toList()) {
            List<StreamView> streams = new ArrayList<>();
            for (Priority priority : Priority.values()) {
                Depth d = queue.depth(agent, priority);
                streams.add(new StreamView(priority.wireName(), d.stream(), d.length(), d.waiting(), d.pending(), d.consumers(),
                        d.oldestAgeMs()));
            }
            agents.add(new AgentQueues(agent, streams, queue.delayed(agent)));
        }
        return new Queues(agents, queue.deadCount());
    }

    @Operation(operationId = "workers", summary = "Live workers", description = "Their latest heartbeats.")
    @ApiResponse(responseCode = "200", description = "The workers",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Workers.class),
                    examples = @ExampleObject(name = "one worker", value = """
                            {"workers": [{"id": "worker-1", "agents": ["claude-code", "codex"], "slots": 4, \
                            "busy": 1, "in_flight": ["kage:jobs:{claude-code}:normal/1718000000000-0"], \
                            "heartbeat_at": "2025-06-10T08:00:05Z", "pid": 4242}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(value = "/workers", produces = MediaType.APPLICATION_JSON)
    public Workers workers() {
        return new Workers(workers.workers());
    }

    /** @param dead entries in the dead-letter stream, all agents */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Queues(List<AgentQueues> agents, long dead) {
    }

    /** @param delayed retries and deferrals waiting for their time */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record AgentQueues(String agent, List<StreamView> priorities, long delayed) {
    }

    /**
     * @param waiting      not yet delivered to a worker (-1: the Redis server cannot say)
     * @param pending      delivered, not acknowledged: running, or left by a dead worker until reclaimed
     * @param oldestAgeMs  age of the oldest entry waiting or pending, 0 when none
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record StreamView(String priority, String stream, long length, long waiting, long pending, long consumers,
                             long oldestAgeMs) {
    }

    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Workers(List<Worker> workers) {
    }
}
