package dev.kage.redis;

import io.lettuce.core.RedisException;
import io.lettuce.core.api.sync.RedisCommands;
import java.util.Map;
import java.util.Optional;

/**
 * Whether Redis may evict Kage's keys. A {@code maxmemory-policy} other than {@code noeviction} lets a Redis near its
 * {@code maxmemory} delete keys to make room: a worker's heartbeat (its running jobs are then reclaimed and run twice),
 * a job's live state (a cancel is forgotten), a budget's pool (spend starts again from zero), an enqueue-once marker (a
 * job is enqueued twice). Sidekiq and BullMQ warn alike. Stateless; thread-safe.
 */
public final class EvictionCheck {
    private EvictionCheck() {
    }

    /**
     * The warning to log when Redis may evict keys, empty when it may not or cannot say ({@code CONFIG} renamed or
     * refused, as managed services do: then nothing is claimed either way).
     */
    public static Optional<String> warning(RedisCommands<String, String> redis) {
        Map<String, String> policy;
        try {
            policy = redis.configGet("maxmemory-policy");
        } catch (RedisException e) {
            return Optional.empty();
        }
        String value = policy.get("maxmemory-policy");
        if (value == null || value.equals("noeviction")) {
            return Optional.empty();
        }
        return Optional.of("Redis's maxmemory-policy is '" + value + "': near its maxmemory it deletes keys Kage cannot lose "
                + "(heartbeats, so running jobs are reclaimed and run twice; budget pools; cancels). Set "
                + "maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)");
    }
}
