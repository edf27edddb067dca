package dev.kage.coordinator.health;

import dev.kage.store.Database;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.health.HealthStatus;
import io.micronaut.management.health.indicator.HealthIndicator;
import io.micronaut.management.health.indicator.HealthResult;
import io.micronaut.management.health.indicator.annotation.Readiness;
import jakarta.inject.Singleton;
import io.micronaut.scheduling.TaskExecutors;
import jakarta.inject.Named;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.concurrent.ExecutorService;
import java.util.Map;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * {@code /health} and {@code /health/readiness} are UP only when Redis answers PING and Postgres answers a query
 * (503 DOWN otherwise, so compose and Kubernetes send no traffic). {@code /health/liveness} does not ask them: a
 * backend outage is no reason to restart the coordinator. The two checks run at once on the blocking executor, each
 * counted DOWN after {@link #CHECK_TIMEOUT} (a loaded host answers a live backend well within it). On the event loop, a
 * backend that hangs (a stopped process, a host gone without a reset) held it for up to the socket timeout, and with it
 * {@code /health/liveness} and every other request on that loop. Thread-safe.
 */
@Readiness
@Singleton
public class BackendsHealthIndicator implements HealthIndicator {
    /** How long a check may take before its backend counts as DOWN. */
    static final Duration CHECK_TIMEOUT = Duration.ofSeconds(5);

    private final RedisCommands<String, String> redis;
    private final Database database;
    private final Scheduler blocking;

    public BackendsHealthIndicator(RedisCommands<String, String> redis, Database database,
                                   @Named(TaskExecutors.BLOCKING) ExecutorService blocking) {
        this.redis = redis;
        this.database = database;
        this.blocking = Schedulers.fromExecutorService(blocking);
    }

    @Override
    public Publisher<HealthResult> getResult() {
        Mono<Boolean> redisUp = check(() -> "PONG".equals(redis.ping()));
        Mono<Boolean> postgresUp = check(database::isReachable);
        return Mono.zip(redisUp, postgresUp, (r, p) -> {
            Map<String, String> details = new LinkedHashMap<>();
            details.put("redis", r ? "UP" : "DOWN");
            details.put("postgres", p ? "UP" : "DOWN");
            return HealthResult.builder("kage-backends", r && p ? HealthStatus.UP : HealthStatus.DOWN).details(details).build();
        });
    }

    private Mono<Boolean> check(java.util.concurrent.Callable<Boolean> up) {
        return Mono.fromCallable(up)
                .subscribeOn(blocking)
                .timeout(CHECK_TIMEOUT, Mono.just(false))
                .onErrorReturn(false);
    }
}
