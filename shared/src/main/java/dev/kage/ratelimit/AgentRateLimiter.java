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
     * Takes one permit for {@code agent}, waiting as long as needed. Logs the seed's line
     * ("Rate limit: 50/50 RPM. Waiting 5.2s...") once per wait, not per poll.
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
        RateLimiterConfig config = limiter.getConfig();
        long rate = config.getRate();
        LOG.info("Rate limit: {}/{} RPM for {}. Waiting {}s...", rate, rate, agent,
                String.format("%.1f", Math.max(0.1, limiter.remainTimeToLive() / 1000.0)));
        while (!limiter.tryAcquire(1, Duration.ofSeconds(1))) {
            if (Thread.currentThread().isInterrupted()) {
                throw new InterruptedException("interrupted while waiting for a rate-limit permit for " + agent);
            }
        }
        return Duration.ofNanos(System.nanoTime() - started);
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
