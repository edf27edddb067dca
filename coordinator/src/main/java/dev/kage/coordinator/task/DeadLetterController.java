package dev.kage.coordinator.task;

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
import java.util.regex.Pattern;

/** The caller's dead letters ({@code kage:jobs:dead}) and their replay. */
@Controller("/api/v1/dead-letters")
@ExecuteOn(TaskExecutors.BLOCKING)
public class DeadLetterController {
    private static final Pattern STREAM_ID = Pattern.compile("\\d{1,20}-\\d{1,20}");

    private final TaskService service;

    public DeadLetterController(TaskService service) {
        this.service = service;
    }

    @RequiresScope(Scope.READ)
    @Get(produces = MediaType.APPLICATION_JSON)
    public Letters list(HttpRequest<?> request, @Nullable @QueryValue Integer limit) {
        int n = limit == null ? 50 : Math.max(1, Math.min(limit, 500));
        return new Letters(service.deadLetters(tenant(request), n).stream().map(DeadLetterController::view).toList());
    }

    /** 202 with the job as enqueued again; 404 for an unknown (or another tenant's, or already replayed) letter. */
    @RequiresScope(Scope.SUBMIT)
    @Post(value = "/{id}/replay", consumes = MediaType.ALL, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> replay(HttpRequest<?> request, @PathVariable String id) {
        if (!STREAM_ID.matcher(id).matches()) {
            return HttpResponse.notFound(ErrorBody.of("not_found", "no dead letter " + id));
        }
        Optional<JobMessage> job = service.replay(tenant(request), id);
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
