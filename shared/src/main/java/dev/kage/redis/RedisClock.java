package dev.kage.redis;

import io.lettuce.core.RedisException;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.List;

/**
 * The Redis server's clock, for what every process must read alike: which budget day or month a hold belongs to is
 * one answer for the whole fleet, whatever a worker's own clock says. Reads {@code TIME} at most every
 * {@link #RESAMPLE} and adds the monotonic time elapsed since ({@link System#nanoTime}), so it costs a round trip a
 * few times a minute, not per call. Until Redis has answered once it reads {@code fallback}; when Redis stops
 * answering it goes on from its last reading. UTC. Thread-safe.
 */
public final class RedisClock extends Clock {
    /** How often {@code TIME} is read again at most. */
    public static final Duration RESAMPLE = Duration.ofSeconds(10);

    private final RedisCommands<String, String> redis;
    private final Clock fallback;
    private final long resampleNanos;
    private volatile Reading reading;

    /** A {@code TIME} reply and the {@link System#nanoTime} it stands for (the middle of its round trip). */
    private record Reading(Instant at, long nanos) {
    }

    /**
     * @param fallback read until Redis has answered once (this process's clock)
     */
    public RedisClock(RedisCommands<String, String> redis, Clock fallback) {
        this(redis, fallback, RESAMPLE);
    }

    RedisClock(RedisCommands<String, String> redis, Clock fallback, Duration resample) {
        this.redis = redis;
        this.fallback = fallback;
        this.resampleNanos = resample.toNanos();
    }

    @Override
    public Instant instant() {
        Reading last = reading;
        long now = System.nanoTime();
        if (last == null || now - last.nanos() >= resampleNanos) {
            try {
                List<String> time = redis.time();
                long after = System.nanoTime();
                last = new Reading(Instant.ofEpochSecond(Long.parseLong(time.get(0)), Long.parseLong(time.get(1)) * 1_000),
                        now + (after - now) / 2);
                reading = last;
            } catch (RedisException e) {
                if (last == null) {
                    return fallback.instant();
                }
            }
        }
        return last.at().plusNanos(System.nanoTime() - last.nanos());
    }

    @Override
    public ZoneId getZone() {
        return ZoneOffset.UTC;
    }

    @Override
    public Clock withZone(ZoneId zone) {
        if (ZoneOffset.UTC.equals(zone)) {
            return this;
        }
        throw new UnsupportedOperationException("the Redis clock is read in UTC only");
    }
}
