package dev.kage.config;

import java.time.Duration;

/**
 * How the job queue delivers, reclaims, retries and trims. Immutable.
 *
 * @param maxDeliveries    deliveries of one entry that never finished before it is a poison job and goes to the
 *                         dead letters ({@code KAGE_MAX_DELIVERIES}, default 5)
 * @param reclaimIdle      an in-flight entry not refreshed for this long, whose worker's heartbeat lapsed or that its
 *                         worker no longer tracks, is reclaimed ({@code KAGE_RECLAIM_IDLE_SECONDS}, default 30; live
 *                         workers refresh their entries every 5 s, so a long job on a live worker is never taken)
 * @param retryBackoffBase first delay before retrying a failed run ({@code KAGE_RETRY_BACKOFF_BASE}, seconds, default 5)
 * @param retryBackoffMax  longest retry delay ({@code KAGE_RETRY_BACKOFF_MAX}, seconds, default 300)
 * @param keepAcked        acknowledged entries each stream keeps for inspection before trimming
 *                         ({@code KAGE_STREAM_KEEP_ACKED}, default 1000)
 * @param deadLetterMax    dead letters kept, the oldest dropped beyond it ({@code KAGE_DEAD_LETTER_MAX}, default 10,000,
 *                         at most 100,000; Sidekiq's dead set keeps 10,000). A dropped letter's job stays failed with
 *                         its {@code PoisonJobError} row; it can no longer be replayed
 * @param deadLetterMaxAge dead letters older than this are dropped ({@code KAGE_DEAD_LETTER_DAYS}, default 180)
 */
public record QueueSettings(int maxDeliveries, Duration reclaimIdle, Duration retryBackoffBase, Duration retryBackoffMax,
                            long keepAcked, int deadLetterMax, Duration deadLetterMaxAge) {

    public static final int DEFAULT_MAX_DELIVERIES = 5;
    public static final long DEFAULT_RECLAIM_IDLE_SECONDS = 30;
    public static final double DEFAULT_RETRY_BACKOFF_BASE = 5;
    public static final double DEFAULT_RETRY_BACKOFF_MAX = 300;
    public static final long DEFAULT_KEEP_ACKED = 1_000;
    public static final int DEFAULT_DEAD_LETTER_MAX = 10_000;
    /** The listing reads them all in the worst case: 200 reads of 500 letters. */
    public static final int MAX_DEAD_LETTER_MAX = 100_000;
    public static final long DEFAULT_DEAD_LETTER_DAYS = 180;
    /** Below this, a live worker's 5-second refresh could race the reclaimer. */
    public static final long MIN_RECLAIM_IDLE_SECONDS = 15;

    /** Each worker's minute trim may read up to this many entries of a stream; more would only cost Redis. */
    public static final long MAX_KEEP_ACKED = 100_000;
    /** The longest {@code KAGE_RECLAIM_IDLE_SECONDS}: 7 days. */
    public static final long MAX_RECLAIM_IDLE_SECONDS = 7L * 24 * 3600;

    private static long keepAcked(Env env) {
        long keep = env.positiveLong("KAGE_STREAM_KEEP_ACKED", DEFAULT_KEEP_ACKED);
        if (keep > MAX_KEEP_ACKED) {
            throw new ConfigException("KAGE_STREAM_KEEP_ACKED=" + keep + ": must be at most " + MAX_KEEP_ACKED);
        }
        return keep;
    }

    public static QueueSettings load(Env env) {
        long idle = env.positiveLong("KAGE_RECLAIM_IDLE_SECONDS", DEFAULT_RECLAIM_IDLE_SECONDS);
        if (idle > MAX_RECLAIM_IDLE_SECONDS) {
            // Counted in milliseconds: Long.MAX_VALUE seconds overflowed there, in the reclaim loop, not at start-up.
            throw new ConfigException("KAGE_RECLAIM_IDLE_SECONDS=" + idle + ": must be at most " + MAX_RECLAIM_IDLE_SECONDS
                    + " (7 days)");
        }
        if (idle < MIN_RECLAIM_IDLE_SECONDS) {
            throw new ConfigException("KAGE_RECLAIM_IDLE_SECONDS=" + idle + ": must be at least " + MIN_RECLAIM_IDLE_SECONDS
                    + " (workers refresh in-flight jobs every 5 s)");
        }
        double base = env.positiveDouble("KAGE_RETRY_BACKOFF_BASE", DEFAULT_RETRY_BACKOFF_BASE);
        double max = env.positiveDouble("KAGE_RETRY_BACKOFF_MAX", DEFAULT_RETRY_BACKOFF_MAX);
        if (max < base) {
            throw new ConfigException("KAGE_RETRY_BACKOFF_MAX=" + max + ": must not be below KAGE_RETRY_BACKOFF_BASE=" + base);
        }
        int deadLetterMax = env.positiveInt("KAGE_DEAD_LETTER_MAX", DEFAULT_DEAD_LETTER_MAX);
        if (deadLetterMax > MAX_DEAD_LETTER_MAX) {
            throw new ConfigException("KAGE_DEAD_LETTER_MAX=" + deadLetterMax + ": must be at most " + MAX_DEAD_LETTER_MAX
                    + " (the dead-letter listing reads them all in the worst case)");
        }
        long deadLetterDays = env.positiveLong("KAGE_DEAD_LETTER_DAYS", DEFAULT_DEAD_LETTER_DAYS);
        if (deadLetterDays > 36_500) {
            throw new ConfigException("KAGE_DEAD_LETTER_DAYS=" + deadLetterDays + ": must be at most 36500");
        }
        return new QueueSettings(env.positiveInt("KAGE_MAX_DELIVERIES", DEFAULT_MAX_DELIVERIES), Duration.ofSeconds(idle),
                Duration.ofMillis((long) (base * 1000)), Duration.ofMillis((long) (max * 1000)),
                keepAcked(env), deadLetterMax, Duration.ofDays(deadLetterDays));
    }

    /** Delay before attempt {@code nextAttempt} (2 for the first retry): base × 2^(n−2), capped, with ±20 % jitter. */
    public Duration retryDelay(int nextAttempt, double jitterUnit) {
        double seconds = retryBackoffBase.toMillis() / 1000.0 * Math.pow(2, Math.max(0, nextAttempt - 2));
        seconds = Math.min(seconds, retryBackoffMax.toMillis() / 1000.0);
        double jitter = 1 + (jitterUnit * 2 - 1) * 0.2;
        return Duration.ofMillis(Math.max(1, (long) (seconds * jitter * 1000)));
    }
}
