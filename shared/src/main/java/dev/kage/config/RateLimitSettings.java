package dev.kage.config;

import dev.kage.ratelimit.FleetRateLimiter.FailureMode;
import dev.kage.ratelimit.Limit;
import java.time.Duration;
import java.util.Optional;

/**
 * Fleet-wide rate limiting and 429 handling. Immutable.
 *
 * @param requestsPerWindow default requests per window per limit group ({@code MAX_REQUESTS_PER_MINUTE}, default 50;
 *                          per window of {@code RATE_LIMIT_WINDOW_SECONDS}, a minute unless changed)
 * @param window            default window ({@code RATE_LIMIT_WINDOW_SECONDS}, default 60; tests use seconds)
 * @param guard             how much longer than the window a permit is held ({@code RATE_LIMIT_GUARD_MS}; default
 *                          {@link Limit#defaultGuard}: 2.5 % of the window, 25 ms to 1 s)
 * @param onRedisError      {@code RATE_LIMIT_ON_REDIS_ERROR}: {@code closed} (default: no permit while Redis is
 *                          unreachable) or {@code open} (permits unchecked, counted and logged)
 * @param maxSlotWait       a job waits for a permit in its worker slot up to this long; a longer wait (or a
 *                          cooldown) sends it to the delayed set instead ({@code RATE_LIMIT_MAX_SLOT_WAIT_SECONDS}, default 5)
 * @param backoffBase       {@code RATE_LIMIT_BACKOFF_BASE}, first pause after a 429 (default 1 s)
 * @param backoffMax        {@code RATE_LIMIT_BACKOFF_MAX}, longest pause (default 60 s)
 * @param maxRetries        {@code RATE_LIMIT_MAX_RETRIES}: 429s a job survives (default 5); the next fails it
 *                          with a {@code RateLimitError} row
 */
public record RateLimitSettings(long requestsPerWindow, Duration window, Optional<Duration> guard, FailureMode onRedisError,
                                Duration maxSlotWait, Duration backoffBase, Duration backoffMax, int maxRetries) {

    public static final double DEFAULT_WINDOW_SECONDS = 60;
    public static final double DEFAULT_MAX_SLOT_WAIT_SECONDS = 5;

    static RateLimitSettings load(Env env, int requestsPerWindow, double backoffBaseSeconds, double backoffMaxSeconds,
                                  int maxRetries) {
        double windowSeconds = env.positiveDouble("RATE_LIMIT_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS);
        Duration window = Duration.ofMillis(Math.round(windowSeconds * 1000));
        if (window.toMillis() < 1 || windowSeconds > 86_400) {
            throw new ConfigException("RATE_LIMIT_WINDOW_SECONDS=" + windowSeconds + ": must be from 0.001 to 86400 seconds");
        }
        Optional<Duration> guard = Optional.empty();
        if (env.get("RATE_LIMIT_GUARD_MS").isPresent()) {
            String raw = env.get("RATE_LIMIT_GUARD_MS").get();
            try {
                long ms = Long.parseLong(raw);
                if (ms < 0 || ms > 60_000) {
                    throw new NumberFormatException();
                }
                guard = Optional.of(Duration.ofMillis(ms));
            } catch (NumberFormatException e) {
                throw new ConfigException("RATE_LIMIT_GUARD_MS=" + raw + ": must be an integer from 0 to 60000 milliseconds");
            }
        }
        double slotWait = env.positiveDouble("RATE_LIMIT_MAX_SLOT_WAIT_SECONDS", DEFAULT_MAX_SLOT_WAIT_SECONDS);
        return new RateLimitSettings(requestsPerWindow, window, guard,
                env.oneOf("RATE_LIMIT_ON_REDIS_ERROR", FailureMode.class, FailureMode.CLOSED),
                Duration.ofMillis(Math.round(slotWait * 1000)), Duration.ofMillis(Math.round(backoffBaseSeconds * 1000)),
                Duration.ofMillis(Math.round(backoffMaxSeconds * 1000)), maxRetries);
    }

    /**
     * The pause after the {@code n}-th 429 of a job (0 for the first): the seed's schedule,
     * {@code RATE_LIMIT_BACKOFF_BASE} doubling up to {@code RATE_LIMIT_BACKOFF_MAX} (1 s, 2 s, 4 s, … 60 s), and
     * never shorter than the provider's {@code Retry-After}.
     */
    public Duration backoff(int n, Optional<Duration> retryAfter) {
        double millis = backoffBase.toMillis() * Math.pow(2, Math.min(n, 30));
        Duration pause = Duration.ofMillis((long) Math.min(millis, backoffMax.toMillis()));
        if (retryAfter.isPresent() && retryAfter.get().compareTo(pause) > 0) {
            return retryAfter.get();
        }
        return pause;
    }

    /** The guard for a window: the configured one, else {@link Limit#defaultGuard}. */
    public Duration guardFor(Duration window) {
        return guard.orElseGet(() -> Limit.defaultGuard(window));
    }
}
