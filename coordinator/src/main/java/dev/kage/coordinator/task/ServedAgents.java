package dev.kage.coordinator.task;

import dev.kage.redis.KageKeys;
import io.lettuce.core.KeyScanCursor;
import io.lettuce.core.RedisException;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanCursor;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Duration;
import java.util.HashSet;
import java.util.Optional;
import java.util.Set;

/**
 * Which agents some live worker serves, from the workers' heartbeats ({@code kage:worker:<id>}, field
 * {@code agents}; a heartbeat expires 20 s after its worker stops). A task for an agent nobody serves is still
 * accepted — it is durable and runs when such a worker starts — but the answer says it is waiting. Read at most
 * every {@link #FRESH} (one {@code SCAN} of the heartbeat keys). Thread-safe.
 */
public final class ServedAgents {
    /** How long one reading of the heartbeats is used. */
    static final Duration FRESH = Duration.ofSeconds(2);

    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private volatile Set<String> served;
    private volatile long readAt;

    public ServedAgents(KageKeys keys, RedisCommands<String, String> redis) {
        this.keys = keys;
        this.redis = redis;
    }

    /** The agents served now, or empty when Redis cannot say (then nothing is reported as waiting). */
    public Optional<Set<String>> served() {
        Set<String> current = served;
        if (current != null && System.nanoTime() - readAt < FRESH.toNanos()) {
            return Optional.of(current);
        }
        try {
            Set<String> agents = new HashSet<>();
            ScanCursor cursor = ScanCursor.INITIAL;
            do {
                KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(keys.workerPrefix() + "*").limit(500));
                for (String key : page.getKeys()) {
                    String list = redis.hget(key, "agents");
                    if (list != null && !list.isBlank()) {
                        agents.addAll(Set.of(list.split(",")));
                    }
                }
                cursor = page;
            } while (!cursor.isFinished());
            served = Set.copyOf(agents);
            readAt = System.nanoTime();
            return Optional.of(served);
        } catch (RedisException e) {
            return Optional.empty();
        }
    }

    /** Why {@code agent}'s jobs wait, or empty when a live worker serves it (or Redis cannot say). */
    public Optional<String> waiting(String agent) {
        return served().filter(agents -> !agents.contains(agent)).map(agents -> "no live worker serves " + agent
                + "; its jobs wait in the queue until one starts");
    }
}
