package dev.kage.coordinator.health;

import dev.kage.store.Database;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.health.HealthStatus;
import io.micronaut.management.health.indicator.HealthIndicator;
import io.micronaut.management.health.indicator.HealthResult;
import io.micronaut.management.health.indicator.annotation.Readiness;
import jakarta.inject.Singleton;
import java.util.LinkedHashMap;
import java.util.Map;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;

/**
 * {@code /health} and {@code /health/readiness} are UP only when Redis answers PING and Postgres answers a query
 * (503 DOWN otherwise, so compose and Kubernetes send no traffic). {@code /health/liveness} does not ask them: a
 * backend outage is no reason to restart the coordinator. Thread-safe.
 */
@Readiness
@Singleton
public class BackendsHealthIndicator implements HealthIndicator {
    private final RedisCommands<String, String> redis;
    private final Database database;

    public BackendsHealthIndicator(RedisCommands<String, String> redis, Database database) {
        this.redis = redis;
        this.database = database;
    }

    @Override
    public Publisher<HealthResult> getResult() {
        return Mono.fromCallable(() -> {
            Map<String, String> details = new LinkedHashMap<>();
            boolean redisUp;
            try {
                redisUp = "PONG".equals(redis.ping());
            } catch (RedisException e) {
                redisUp = false;
            }
            boolean postgresUp = database.isReachable();
            details.put("redis", redisUp ? "UP" : "DOWN");
            details.put("postgres", postgresUp ? "UP" : "DOWN");
            return HealthResult.builder("kage-backends", redisUp && postgresUp ? HealthStatus.UP : HealthStatus.DOWN)
                    .details(details).build();
        });
    }
}
