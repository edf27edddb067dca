package dev.kage.agent;

import java.util.Set;

/**
 * When a failed run of an agent is tried again. A run killed by a signal the worker did not send (a
 * crash) is always worth retrying; other failures only as configured. Immutable.
 *
 * @param maxAttempts runs in all, the first included ({@code retry.max_attempts}, default 3)
 * @param exitCodes   non-zero exit codes worth retrying ({@code retry.exit_codes}, default none)
 * @param onTimeout   retry a run that passed its timeout ({@code retry.on_timeout}, default false)
 */
public record RetryPolicy(int maxAttempts, Set<Integer> exitCodes, boolean onTimeout) {
    public static final RetryPolicy DEFAULT = new RetryPolicy(3, Set.of(), false);

    public RetryPolicy {
        exitCodes = Set.copyOf(exitCodes);
    }

    /** True when a run that ended with {@code exitCode} (or timed out) may be retried. */
    public boolean retryable(int exitCode, boolean timedOut) {
        if (timedOut) {
            return onTimeout;
        }
        return exitCode >= 128 || exitCodes.contains(exitCode);
    }
}
