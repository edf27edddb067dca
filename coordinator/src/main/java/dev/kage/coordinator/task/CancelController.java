package dev.kage.coordinator.task;

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
@ExecuteOn(TaskExecutors.BLOCKING)
public class CancelController {
    private final TaskService service;

    public CancelController(TaskService service) {
        this.service = service;
    }

    /** 202 when cancelled now; 409 when the task had already ended; 404 for an unknown or another tenant's task. */
    @RequiresScope(Scope.SUBMIT)
    @Post(value = "/{id}/cancel", consumes = MediaType.ALL, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> cancel(HttpRequest<?> request, @PathVariable String id) {
        String tenant = request.getAttribute(ApiKeyFilter.TENANT, String.class).orElseThrow();
        Optional<UUID> taskId = parse(id);
        Optional<TaskStatus> before = taskId.flatMap(uuid -> service.cancel(tenant, uuid));
        if (before.isEmpty()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no task " + id + " for this API key"));
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
