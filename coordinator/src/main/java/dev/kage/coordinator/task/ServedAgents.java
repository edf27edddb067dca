package dev.kage.coordinator.task;

import dev.kage.redis.KageKeys;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The live workers, from their heartbeats ({@code kage:worker:<id>}: agents, slots, busy, in-flight entries; a
 * heartbeat expires 20 s after its worker stops), and which agents they serve. A task for an agent nobody serves
 * is still accepted — it is durable and runs when such a worker starts — but the answer says it is waiting; for
 * that the set of served agents is read at most every {@link #FRESH}: the ids in the worker set ({@code kage:workers},
 * which each worker joins with its heartbeat) and their heartbeats, one round trip per worker. (It was a {@code SCAN}
 * of the keyspace, which on a Redis holding a busy fleet's task keys is hundreds of round trips.)
 *
 * <p>One caller at a time reads it: while a reading is under way the others answer from the previous one (every
 * submit of a 2 s window reading at once — what the load scenario found — cost Redis CPU and latency spikes). Only the
 * very first callers wait for the first reading. Thread-safe.
 */
public final class ServedAgents {
    /** How long one reading of the heartbeats is used for {@link #waiting}. */
    static final Duration FRESH = Duration.ofSeconds(2);

    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private final java.util.concurrent.locks.ReentrantLock reading = new java.util.concurrent.locks.ReentrantLock();
    private volatile Set<String> served;
    private volatile long readAt;

    private final long freshNanos;

    public ServedAgents(KageKeys keys, RedisCommands<String, String> redis) {
        this(keys, redis, FRESH);
    }

    /** @param fresh how long one reading is used (tests pass zero to make every call want a new one) */
    ServedAgents(KageKeys keys, RedisCommands<String, String> redis, Duration fresh) {
        this.keys = keys;
        this.redis = redis;
        this.freshNanos = fresh.toNanos();
    }

    /**
     * Every live worker now, by id.
     *
     * @throws RedisException when Redis cannot be read
     */
    public List<Worker> workers() {
        List<Worker> workers = new ArrayList<>();
        for (String id : redis.smembers(keys.workers())) {
            Map<String, String> beat = redis.hgetall(keys.worker(id));
            if (beat.isEmpty()) {
                // Its heartbeat expired: the worker died without removing itself.
                redis.srem(keys.workers(), id);
            } else {
                workers.add(Worker.of(id, beat));
            }
        }
        workers.sort(java.util.Comparator.comparing(Worker::id));
        return workers;
    }

    /**
     * The agents served now (a reading at most {@link #FRESH} old by default, or older while another caller is reading), or empty
     * when Redis cannot say (then nothing is reported as waiting).
     */
    public Optional<Set<String>> served() {
        Set<String> current = served;
        if (current != null && System.nanoTime() - readAt < freshNanos) {
            return Optional.of(current);
        }
        if (current != null) {
            if (!reading.tryLock()) {
                return Optional.of(current); // another caller is reading: its result is a moment away
            }
        } else {
            reading.lock(); // no reading yet: wait for the one under way rather than scan beside it
        }
        try {
            if (served != null && System.nanoTime() - readAt < freshNanos) {
                return Optional.of(served);
            }
            Set<String> agents = new HashSet<>();
            workers().forEach(w -> agents.addAll(w.agents()));
            served = Set.copyOf(agents);
            readAt = System.nanoTime();
            return Optional.of(served);
        } catch (RedisException e) {
            return Optional.empty();
        } finally {
            reading.unlock();
        }
    }

    /** Why {@code agent}'s jobs wait, or empty when a live worker serves it (or Redis cannot say). */
    public Optional<String> waiting(String agent) {
        return served().filter(agents -> !agents.contains(agent)).map(agents -> "no live worker serves " + agent
                + "; its jobs wait in the queue until one starts");
    }

    /**
     * One worker's heartbeat.
     *
     * @param slots       agent processes it runs at once ({@code MAX_PARALLEL_CLIS})
     * @param busy        slots in use
     * @param inFlight    the stream entries it runs ({@code stream/entryId})
     * @param heartbeatAt when it last beat (its clock)
     */
    @io.micronaut.serde.annotation.Serdeable(naming = io.micronaut.serde.config.naming.SnakeCaseStrategy.class)
    public record Worker(String id, List<String> agents, int slots, int busy, List<String> inFlight, String heartbeatAt,
                         Long pid) {
        static Worker of(String id, Map<String, String> beat) {
            return new Worker(id, split(beat.get("agents")), parse(beat.get("slots")), parse(beat.get("busy")),
                    split(beat.get("in_flight")), beat.get("heartbeat_at"),
                    pid(beat.get("pid")));
        }

        /** A heartbeat's pid; null when missing or not a number (a hash written by hand, another version). */
        private static Long pid(String value) {
            try {
                return value == null ? null : Long.valueOf(value);
            } catch (NumberFormatException e) {
                return null;
            }
        }

        private static List<String> split(String value) {
            return value == null || value.isBlank() ? List.of() : Arrays.asList(value.split(","));
        }

        private static int parse(String value) {
            try {
                return value == null ? 0 : Integer.parseInt(value);
            } catch (NumberFormatException e) {
                return 0;
            }
        }
    }
}
