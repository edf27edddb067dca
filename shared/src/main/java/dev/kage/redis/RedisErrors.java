package dev.kage.redis;

import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisException;
import java.util.regex.Pattern;

/**
 * Which Redis failures are about Redis (down, busy, failing over: asking again later may succeed) and which are about
 * the command (an error reply for these keys or arguments: asking again gives the same answer). Stateless.
 */
public final class RedisErrors {
    /** Error replies a healthy command gets from a Redis that is loading, busy, read-only, failing over or out of memory. */
    private static final Pattern TRANSIENT_REPLY = Pattern.compile("(?s)^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|READONLY|CLUSTERDOWN|OOM|NOREPLICAS"
            + "|NOSCRIPT|MISCONF)\\b.*");

    private RedisErrors() {
    }

    /**
     * True when Redis could not answer or answered with an error that says it is not ready (a connection failure, a
     * timeout, {@code LOADING}, {@code READONLY} after a failover, {@code OOM}, ...); false for an error reply about the
     * command itself ({@code WRONGTYPE}, a script's error).
     */
    public static boolean isTransient(RedisException e) {
        if (!(e instanceof RedisCommandExecutionException)) {
            return true;
        }
        return TRANSIENT_REPLY.matcher(String.valueOf(e.getMessage())).matches();
    }
}
