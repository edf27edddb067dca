package dev.kage.coordinator.api;

import dev.kage.coordinator.task.InvalidRequestException;
import dev.kage.coordinator.task.TaskService.IdempotencyConflictException;
import dev.kage.coordinator.task.TaskService.NotAJobException;
import dev.kage.coordinator.task.TaskService.TaskCancelledException;
import java.util.List;
import dev.kage.store.StoreException;
import io.lettuce.core.RedisException;
import io.micronaut.context.annotation.Factory;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.exceptions.ContentLengthExceededException;
import io.micronaut.http.server.exceptions.ExceptionHandler;
import jakarta.inject.Singleton;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Maps each domain exception to its status and a JSON {@link ErrorBody}. */
@Factory
public class ErrorHandlers {
    private static final Logger LOG = LoggerFactory.getLogger(ErrorHandlers.class);

    @Singleton
    public ExceptionHandler<InvalidRequestException, HttpResponse<ErrorBody>> invalidRequest() {
        return (HttpRequest request, InvalidRequestException e) -> HttpResponse.<ErrorBody>status(HttpStatus.BAD_REQUEST)
                .body(new ErrorBody("validation_failed", "the request is invalid: " + e.getMessage(), e.errors()));
    }

    /** A body over {@code micronaut.server.max-request-size} (1 MiB): 413 in the API's shape, not the framework's. */
    @Singleton
    public ExceptionHandler<ContentLengthExceededException, HttpResponse<ErrorBody>> tooLarge() {
        return (HttpRequest request, ContentLengthExceededException e) -> HttpResponse.<ErrorBody>status(HttpStatus.REQUEST_ENTITY_TOO_LARGE)
                .body(ErrorBody.of("payload_too_large", e.getMessage()));
    }

    @Singleton
    public ExceptionHandler<StoreException, HttpResponse<ErrorBody>> storeDown() {
        return (HttpRequest request, StoreException e) -> {
            LOG.error("Postgres unavailable for {} {}: {}", request.getMethod(), request.getPath(), e.getMessage());
            return HttpResponse.<ErrorBody>status(HttpStatus.SERVICE_UNAVAILABLE)
                    .header("Retry-After", "5")
                    .body(ErrorBody.of("database_unavailable", "the database is unavailable; retry shortly"));
        };
    }

    @Singleton
    public ExceptionHandler<dev.kage.store.LimitOverrideStore.GroupBusyException, HttpResponse<ErrorBody>> limitGroupBusy() {
        return (HttpRequest request, dev.kage.store.LimitOverrideStore.GroupBusyException e) ->
                HttpResponse.<ErrorBody>status(HttpStatus.SERVICE_UNAVAILABLE).header("Retry-After", "1")
                        .body(ErrorBody.of("busy", e.getMessage()));
    }

    @Singleton
    public ExceptionHandler<dev.kage.coordinator.events.EventHub.TooManyStreamsException, HttpResponse<ErrorBody>> tooManyStreams() {
        return (HttpRequest request, dev.kage.coordinator.events.EventHub.TooManyStreamsException e) ->
                HttpResponse.<ErrorBody>status(HttpStatus.TOO_MANY_REQUESTS).header("Retry-After", "15")
                        .body(ErrorBody.of("too_many_streams", e.getMessage()));
    }

    @Singleton
    public ExceptionHandler<IdempotencyConflictException, HttpResponse<ErrorBody>> idempotencyConflict() {
        return (HttpRequest request, IdempotencyConflictException e) -> HttpResponse.<ErrorBody>status(HttpStatus.UNPROCESSABLE_ENTITY)
                .body(new ErrorBody("idempotency_conflict", e.getMessage(),
                        List.of(new ErrorBody.FieldError("Idempotency-Key", "was used for a different request"))));
    }

    @Singleton
    public ExceptionHandler<TaskCancelledException, HttpResponse<ErrorBody>> taskCancelled() {
        return (HttpRequest request, TaskCancelledException e) -> HttpResponse.<ErrorBody>status(HttpStatus.CONFLICT)
                .body(ErrorBody.of("task_cancelled", e.getMessage()));
    }

    @Singleton
    public ExceptionHandler<NotAJobException, HttpResponse<ErrorBody>> notAJob() {
        return (HttpRequest request, NotAJobException e) -> HttpResponse.<ErrorBody>status(HttpStatus.UNPROCESSABLE_ENTITY)
                .body(ErrorBody.of("not_a_job", e.getMessage()));
    }

    @Singleton
    public ExceptionHandler<RedisException, HttpResponse<ErrorBody>> redisDown() {
        return (HttpRequest request, RedisException e) -> {
            LOG.error("Redis unavailable for {} {}: {}", request.getMethod(), request.getPath(), e.getMessage());
            return HttpResponse.<ErrorBody>status(HttpStatus.SERVICE_UNAVAILABLE)
                    .header("Retry-After", "5")
                    .body(ErrorBody.of("redis_unavailable", "Redis is unavailable; retry shortly"));
        };
    }

    /** The limiter's client (Redisson) cannot reach Redis: 503 like the rest. */
    @Singleton
    public ExceptionHandler<org.redisson.client.RedisException, HttpResponse<ErrorBody>> limiterRedisDown() {
        return (HttpRequest request, org.redisson.client.RedisException e) -> {
            LOG.error("Redis unavailable for {} {}: {}", request.getMethod(), request.getPath(), e.getMessage());
            return HttpResponse.<ErrorBody>status(HttpStatus.SERVICE_UNAVAILABLE)
                    .header("Retry-After", "5")
                    .body(ErrorBody.of("redis_unavailable", "Redis is unavailable; retry shortly"));
        };
    }
}
