package dev.kage.ratelimit;

import java.time.Duration;

/**
 * A limit group's limit: at most {@code requests} calls and {@code tokens} tokens in any
 * {@code window}, across the whole fleet. Immutable.
 *
 * @param requests calls per window, at least 1
 * @param window   the sliding window, at least 1 ms
 * @param tokens   tokens per window (TPM when the window is a minute); 0 for no token limit
 * @param guard    how much longer than the window each permit is held, so that the lag between a
 *                 grant and the call reaching the provider (a process start, a connection) cannot
 *                 put one call too many into a provider-side window; zero or more
 */
public record Limit(long requests, Duration window, long tokens, Duration guard) {

    public Limit {
        if (requests < 1) {
            throw new IllegalArgumentException("requests must be at least 1, not " + requests);
        }
        if (window.toMillis() < 1) {
            throw new IllegalArgumentException("window must be at least 1 ms, not " + window);
        }
        if (tokens < 0) {
            throw new IllegalArgumentException("tokens must be 0 (no token limit) or more, not " + tokens);
        }
        if (guard.isNegative()) {
            throw new IllegalArgumentException("guard must not be negative, not " + guard);
        }
    }

    /**
     * The guard used when none is configured: 2.5 % of the window, at least 25 ms and at most 1 s
     * (25 ms for a 1 s window, 1 s for a minute).
     */
    public static Duration defaultGuard(Duration window) {
        long millis = Math.round(window.toMillis() * 0.025);
        return Duration.ofMillis(Math.clamp(millis, 25, 1_000));
    }

    /** Requests per window as people say it: "50 RPM" for a minute, else "20 per 2s". */
    public String describe() {
        if (window.equals(Duration.ofMinutes(1))) {
            return requests + " RPM";
        }
        return requests + " per " + human(window);
    }

    static String human(Duration duration) {
        long ms = duration.toMillis();
        if (ms % 1000 == 0) {
            return (ms / 1000) + "s";
        }
        return ms + "ms";
    }
}
