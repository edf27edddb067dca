package dev.kage.ratelimit;

import dev.kage.redis.KageKeys;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.redisson.api.RRateLimiter;
import org.redisson.api.RateLimiterConfig;
import org.redisson.api.RateType;
import org.redisson.api.RedissonClient;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Requests per minute per agent, shared by the whole fleet through a Redisson {@link RRateLimiter}
 * of type {@link RateType#OVERALL} at {@code kage:rl:<agent>:rpm}. Thread-safe.
 *
 * <p>Redisson's {@code trySetRate} never changes an existing limiter; when the configured rate
 * differs from the one stored, this class logs it at start-up and keeps the stored one (changing a
 * live limit without a burst is the limits API's job).
 */
public final class AgentRateLimiter {
    private static final Logger LOG = LoggerFactory.getLogger(AgentRateLimiter.class);

    private final KageKeys keys;
    private final RedissonClient redisson;
    private final long requestsPerMinute;
    private final Map<String, RRateLimiter> limiters = new ConcurrentHashMap<>();

    public AgentRateLimiter(KageKeys keys, RedissonClient redisson, long requestsPerMinute) {
        this.keys = keys;
        this.redisson = redisson;
        this.requestsPerMinute = requestsPerMinute;
    }

    /**
     * Takes one permit for {@code agent}, waiting as long as needed. Logs one line when it has to
     * wait ("Rate limit: 50/50 RPM for claude-code. Waiting for a permit...") and one when the wait
     * ends, never one per poll.
     *
     * @return how long the caller waited
     * @throws InterruptedException when the worker is shutting down
     */
    public Duration acquire(String agent) throws InterruptedException {
        RRateLimiter limiter = limiter(agent);
        if (limiter.tryAcquire(1)) {
            return Duration.ZERO;
        }
        long started = System.nanoTime();
        long rate = limiter.getConfig().getRate();
        LOG.info("Rate limit: {}/{} RPM for {}. Waiting for a permit...", rate, rate, agent);
        while (!limiter.tryAcquire(1, Duration.ofSeconds(1))) {
            if (Thread.currentThread().isInterrupted()) {
                throw new InterruptedException("interrupted while waiting for a rate-limit permit for " + agent);
            }
        }
        Duration waited = Duration.ofNanos(System.nanoTime() - started);
        LOG.info("Rate limit: permit for {} after {}s", agent, String.format("%.1f", waited.toMillis() / 1000.0));
        return waited;
    }

    /** Permits {@code agent} has left in the current window, across the fleet. */
    public long availablePermits(String agent) {
        return limiter(agent).availablePermits();
    }

    private RRateLimiter limiter(String agent) {
        return limiters.computeIfAbsent(agent, name -> {
            RRateLimiter limiter = redisson.getRateLimiter(keys.requestLimiter(name));
            if (!limiter.trySetRate(RateType.OVERALL, requestsPerMinute, Duration.ofMinutes(1))) {
                RateLimiterConfig stored = limiter.getConfig();
                if (stored.getRate() != requestsPerMinute || stored.getRateInterval() != Duration.ofMinutes(1).toMillis()) {
                    LOG.warn("Rate limiter {} already holds {} per {} ms; MAX_REQUESTS_PER_MINUTE={} is not applied to it",
                            keys.requestLimiter(name), stored.getRate(), stored.getRateInterval(), requestsPerMinute);
                }
            }
            return limiter;
        });
    }
}
