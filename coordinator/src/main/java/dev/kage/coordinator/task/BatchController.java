package dev.kage.coordinator.task;

import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.task.Assignment;
import dev.kage.task.TaskRecord;
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
 * is created.
 */
@Controller("/api/v1")
@ExecuteOn(TaskExecutors.BLOCKING)
public class BatchController {
    private final SubmitRequestParser parser;
    private final TaskService service;

    public BatchController(SubmitRequestParser parser, TaskService service) {
        this.parser = parser;
        this.service = service;
    }

    @RequiresScope(Scope.SUBMIT)
    @Post(value = "/tasks:batch", consumes = {MediaType.APPLICATION_JSON, MediaType.APPLICATION_FORM_URLENCODED,
            MediaType.TEXT_PLAIN, MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<Accepted> submit(HttpRequest<?> request, @Body byte[] body) {
        String tenant = request.getAttribute(ApiKeyFilter.TENANT, String.class).orElseThrow();
        List<TaskRecord> tasks = service.submitBatch(tenant, parser.parseBatch(body));
        return HttpResponse.status(HttpStatus.ACCEPTED).body(new Accepted(tasks.stream()
                .map(t -> new SubmitResponse(t.id().toString(), t.status().wireName(), "/api/v1/tasks/" + t.id(),
                        t.assignments().stream().map(Assignment::cliName).toList(), List.of()))
                .toList()));
    }

    /**
     * @param tasks one entry per submitted task, in the order sent
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Accepted(List<SubmitResponse> tasks) {
    }
}
