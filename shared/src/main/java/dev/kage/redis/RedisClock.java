package dev.kage.redis;

import io.lettuce.core.RedisException;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The Redis server's clock, for what every process must read alike: which budget day or month a hold belongs to is
 * one answer for the whole fleet, whatever a worker's own clock says. Reads {@code TIME} and adds the monotonic time
 * elapsed since ({@link System#nanoTime}); a reading older than {@link #RESAMPLE} is renewed in the background, so a
 * call never waits for Redis once it has answered (callers include a pipeline's writer thread, which must not block).
 * Until Redis has answered once, it asks at most once per {@link #RESAMPLE} and reads {@code fallback} (this process's
 * clock) meanwhile; when Redis stops answering, it goes on from its last reading. UTC. Thread-safe.
 */
public final class RedisClock extends Clock {
    /** How often {@code TIME} is read again at most. */
    public static final Duration RESAMPLE = Duration.ofSeconds(10);

    private final RedisCommands<String, String> redis;
    private final Clock fallback;
    private final long resampleNanos;
    private final AtomicBoolean renewing = new AtomicBoolean();
    private volatile Reading reading;
    /** {@link System#nanoTime} of the last first reading that failed; 0 when none did. */
    private volatile long firstFailed;

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
        if (last == null) {
            long failed = firstFailed;
            if (failed != 0 && now - failed < resampleNanos) {
                return fallback.instant();
            }
            try {
                List<String> time = redis.time();
                last = new Reading(at(time), now + (System.nanoTime() - now) / 2);
                reading = last;
            } catch (RedisException e) {
                firstFailed = System.nanoTime();
                return fallback.instant();
            }
        } else if (now - last.nanos() >= resampleNanos && renewing.compareAndSet(false, true)) {
            try {
                redis.getStatefulConnection().async().time().whenComplete((time, error) -> {
                    if (error == null) {
                        reading = new Reading(at(time), now + (System.nanoTime() - now) / 2);
                    }
                    renewing.set(false);
                });
            } catch (RuntimeException e) {
                renewing.set(false);
            }
        }
        return last.at().plusNanos(System.nanoTime() - last.nanos());
    }

    private static Instant at(List<String> time) {
        return Instant.ofEpochSecond(Long.parseLong(time.get(0)), Long.parseLong(time.get(1)) * 1_000);
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
