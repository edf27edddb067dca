package dev.kage.budget;

import dev.kage.config.BudgetMode;
import dev.kage.redis.KageKeys;
import dev.kage.redis.LuaScript;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Duration;
import java.util.List;

/**
 * A task's token pool in Redis ({@code kage:budget:{tenant}:task:<id>}), shared by all of the task's
 * jobs: reserve an estimate before a run, settle to the actual usage after it. Both steps are single
 * Lua scripts, so concurrent jobs can never all pass a check and then overspend, and both are
 * idempotent under a reservation id, so a command Lettuce replays after a reconnect changes nothing.
 * Thread-safe.
 */
public final class TokenBudget {
    /** How long a pool outlives its last change. */
    public static final Duration POOL_TTL = Duration.ofDays(7);

    private static final LuaScript RESERVE = LuaScript.load(TokenBudget.class, "reserve.lua");
    private static final LuaScript SETTLE = LuaScript.load(TokenBudget.class, "settle.lua");

    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private final BudgetMode mode;
    private final double warningThreshold;

    public TokenBudget(KageKeys keys, RedisCommands<String, String> redis, BudgetMode mode, double warningThreshold) {
        this.keys = keys;
        this.redis = redis;
        this.mode = mode;
        this.warningThreshold = warningThreshold;
    }

    /**
     * Reserves {@code tokens} for one job. In {@link BudgetMode#LOG} a reservation is always accepted
     * (the seed's behaviour); in {@link BudgetMode#ENFORCE} it is refused when used + reserved + tokens
     * would pass the limit.
     *
     * @param reservationId unique per job attempt; reserving twice under one id reserves once
     * @param limit         the pool's size in tokens, applied when the pool is created
     */
    public Reservation reserve(String tenant, String taskId, String reservationId, long tokens, long limit) {
        List<Object> reply = RESERVE.run(redis, ScriptOutputType.MULTI, new String[] {keys.taskBudget(tenant, taskId)},
                reservationId, Long.toString(tokens), Long.toString(limit), mode.name().toLowerCase(),
                Long.toString(POOL_TTL.toMillis()));
        long status = (Long) reply.get(0);
        return new Reservation(status != 0, status == 2, tokens, (Long) reply.get(1), (Long) reply.get(2), (Long) reply.get(3));
    }

    /**
     * Replaces the reservation with the tokens actually used. Settling the same reservation again
     * changes nothing and reports {@link Settlement#firstTime()} false.
     */
    public Settlement settle(String tenant, String taskId, String reservationId, long actualTokens, long limit) {
        List<Object> reply = SETTLE.run(redis, ScriptOutputType.MULTI, new String[] {keys.taskBudget(tenant, taskId)},
                reservationId, Long.toString(actualTokens), Double.toString(warningThreshold), Long.toString(limit),
                Long.toString(POOL_TTL.toMillis()));
        return new Settlement((Long) reply.get(0) == 1, (Long) reply.get(1), (Long) reply.get(2), (Long) reply.get(3) == 1,
                (Long) reply.get(4) == 1);
    }

    /** The pool's current state, or an empty pool of {@code limit} when none exists yet. */
    public PoolState state(String tenant, String taskId, long limit) {
        var fields = redis.hmget(keys.taskBudget(tenant, taskId), "limit", "used", "reserved");
        long poolLimit = fields.get(0).hasValue() ? Long.parseLong(fields.get(0).getValue()) : limit;
        long used = fields.get(1).hasValue() ? Long.parseLong(fields.get(1).getValue()) : 0;
        long reserved = fields.get(2).hasValue() ? Long.parseLong(fields.get(2).getValue()) : 0;
        return new PoolState(poolLimit, used, reserved);
    }

    public BudgetMode mode() {
        return mode;
    }

    /**
     * The answer to a reservation: a probe, not a bare boolean.
     *
     * @param accepted     the tokens are held for the job
     * @param duplicate    this id had already reserved or settled; nothing changed
     * @param requested    tokens asked for
     * @param used         tokens settled in the pool before this reservation
     * @param reserved     tokens held by open reservations, including this one when accepted
     * @param limit        the pool's size
     */
    public record Reservation(boolean accepted, boolean duplicate, long requested, long used, long reserved, long limit) {
        public long remaining() {
            return limit - used - reserved;
        }
    }

    /**
     * The answer to a settlement.
     *
     * @param firstTime     this call settled the reservation (false: it had been settled before)
     * @param used          tokens settled in the pool, all jobs together
     * @param limit         the pool's size
     * @param warningNow    this settlement crossed the warning threshold first
     * @param warningIssued the warning has been issued for this pool
     */
    public record Settlement(boolean firstTime, long used, long limit, boolean warningNow, boolean warningIssued) {
        public boolean exceeded() {
            return used > limit;
        }

        public long remaining() {
            return limit - used;
        }

        /** Percentage of the limit used, rounded to one decimal like the seed's {@code percent_used}. */
        public double percentUsed() {
            return limit == 0 ? 0 : Math.round(1000.0 * used / limit) / 10.0;
        }
    }

    /**
     * @param limit    tokens the pool allows
     * @param used     tokens settled
     * @param reserved tokens held by open reservations
     */
    public record PoolState(long limit, long used, long reserved) {
        public long remaining() {
            return limit - used - reserved;
        }
    }
}
