package dev.kage.budget;

import dev.kage.config.BudgetMode;
import dev.kage.redis.KageKeys;
import dev.kage.redis.LuaScript;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Token and dollar budgets pooled in Redis: a task's pool (shared by all its jobs), its tenant's pools per
 * UTC day and month, and an agent's pools per day and month across tenants. A job must fit every pool that
 * applies before it starts.
 *
 * <p><b>Reserve → settle.</b> {@link #reserve} holds an estimate in the task's and its tenant's pools with one
 * Lua script (they share the tenant's hash tag: all or nothing), then, when the agent has limits of its own,
 * in the agent's pools with a second script under the agent's tag; when that second step is refused the first
 * is given back. {@link #settle} replaces a hold with the usage it came to, once: a replayed settle changes
 * nothing. While an agent runs, {@link #topUp} grows its hold as its output is counted, and refuses when a pool
 * is spent (enforce mode stops the agent then). A hold lapses after its lifetime (the job's timeout and a
 * grace), and a hold for the same job by another worker (a reclaimed delivery) releases the old one at once,
 * so a worker that dies never shrinks a pool for good. A hold's lapse is checked on the Redis clock.
 *
 * <p>Amounts are tokens and micro-USD (1e-6 USD), integers, so Redis adds them exactly. A limit of 0 means
 * none. In {@link BudgetMode#LOG} every hold is granted (the seed's behaviour: violations are only logged).
 * Periods are named by the clock given (UTC): in a fleet the Redis server's ({@link dev.kage.redis.RedisClock}), so
 * that a worker with a skewed clock charges the day and month the others do. A hold belongs to the periods it was taken in: it is released
 * from and charged to those pools (its record in Redis names them) even when it is settled after midnight, in the
 * tenant's and the agent's pools alike; its bookkeeping (settled once, superseded by a reclaiming worker) is kept
 * per task, not per period, so a hold taken before midnight is still recognised after it. Thread-safe.
 */
public final class BudgetLedger {
    /** How long a task's pool outlives its last change. */
    public static final Duration TASK_POOL_TTL = Duration.ofDays(7);
    /** How long settled markers live after their last change (in the task's pool, or the task's hash under the agent's tag). */
    static final Duration BOOKKEEPING_TTL = Duration.ofDays(7);
    private static final int SWEEP_BATCH = 100;

    private static final LuaScript RESERVE = LuaScript.load(BudgetLedger.class, "common.lua", "reserve.lua");
    private static final LuaScript SETTLE = LuaScript.load(BudgetLedger.class, "common.lua", "settle.lua");
    private static final LuaScript TOP_UP = LuaScript.load(BudgetLedger.class, "common.lua", "top-up.lua");
    private static final LuaScript SWEEP = LuaScript.load(BudgetLedger.class, "common.lua", "sweep.lua");
    private static final LuaScript SET_LIMITS = LuaScript.load(BudgetLedger.class, "common.lua", "set-limits.lua");
    private static final LuaScript RELEASE_PREVIOUS = LuaScript.load(BudgetLedger.class, "common.lua", "release-previous.lua");
    /** Every script of the ledger. */
    static final List<LuaScript> SCRIPTS = List.of(RESERVE, SETTLE, TOP_UP, SWEEP, SET_LIMITS, RELEASE_PREVIOUS);

    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private final BudgetMode mode;
    private final double warningThreshold;
    private final FleetBudgetDefaults defaults;
    private final Clock clock;
    /**
     * Top-up calls made by this ledger: each call's id ({@link #topUpStep}) is this count after a prefix of this ledger's
     * own, so a worker restarted under the same id (whose holds keep their names) never repeats an earlier one's.
     */
    private final java.util.concurrent.atomic.AtomicLong topUpCalls = new java.util.concurrent.atomic.AtomicLong();
    private final String callIdPrefix = Long.toHexString(new java.security.SecureRandom().nextLong()) + ".";
    private final Set<String> registeredHoldSets = ConcurrentHashMap.newKeySet();

    /**
     * @param tenantDefaults this process's limits of every tenant's period pools ({@code TENANT_MAX_*}), where no operator
     *                       set others for the tenant; what applies is the fleet's ({@link FleetBudgetDefaults})
     */
    public BudgetLedger(KageKeys keys, RedisCommands<String, String> redis, BudgetMode mode, double warningThreshold,
                        PeriodLimits tenantDefaults, Clock clock) {
        this(keys, redis, mode, warningThreshold, new FleetBudgetDefaults(keys, redis, tenantDefaults,
                FleetBudgetDefaults.MAX_AGE), clock);
    }

    /**
     * @param defaults the fleet's default limits, for a caller that reads them more often than every
     *                 {@link FleetBudgetDefaults#MAX_AGE}
     */
    public BudgetLedger(KageKeys keys, RedisCommands<String, String> redis, BudgetMode mode, double warningThreshold,
                        FleetBudgetDefaults defaults, Clock clock) {
        this.keys = keys;
        this.redis = redis;
        this.mode = mode;
        this.warningThreshold = warningThreshold;
        this.defaults = defaults;
        this.clock = clock;
    }

    /**
     * Loads the ledger's scripts into Redis's script cache and sweeps lapsed holds: what a worker does before its first
     * claim, so its first reservation is as quick as any other.
     */
    public void warmUp() {
        for (LuaScript script : SCRIPTS) {
            script.load(redis);
        }
        sweepExpired();
    }

    public BudgetMode mode() {
        return mode;
    }

    /**
     * Holds {@code request}'s tokens and dollars in every pool that applies, or in none.
     *
     * @return the hold: granted, already held (the same hold id again: nothing changed), or refused naming the pool
     */
    public Hold reserve(HoldRequest request) {
        Instant now = clock.instant();
        String id = request.jobId() + "@" + request.holder();
        String taskPool = keys.taskBudget(request.tenant(), request.taskId());
        List<Pool> tenantPools = List.of(
                new Pool(PoolKind.TASK, request.taskId(), null, taskPool),
                new Pool(PoolKind.TENANT, request.tenant(), Period.DAY.id(now), keys.tenantBudget(request.tenant(), Period.DAY.id(now))),
                new Pool(PoolKind.TENANT, request.tenant(), Period.MONTH.id(now),
                        keys.tenantBudget(request.tenant(), Period.MONTH.id(now))));
        String tenantHolds = keys.tenantHolds(request.tenant());
        List<String> tenantArgs = new ArrayList<>(List.of(Long.toString(request.taskTokenLimit()),
                Long.toString(request.taskUsdLimitMicros()), "", Long.toString(TASK_POOL_TTL.toMillis())));
        addPeriodArgs(tenantArgs, defaults.tenant());
        // Read now, before the first step holds anything: a read failing between the two steps would leave that hold.
        PeriodLimits agentLimits = defaults.agent(request.agent(), request.agentLimits());
        Step first = reserveStep(id, request, tenantHolds, taskPool, Duration.ZERO, keys.tenantBudgetLimits(request.tenant()),
                tenantPools, tenantArgs);
        if (first.status() == 0) {
            // A reclaimed job refused by its tenant's pools: the dead worker's hold in the agent's pools goes too, as its
            // hold in the tenant's just went. Else it held the agent's fleet-wide pools, for every tenant, until it lapsed.
            // Asked whatever the agent's limits are now: the dead worker's hold was taken under the limits of then.
            String agentHolds = keys.agentHolds(request.agent());
            RELEASE_PREVIOUS.run(redis, ScriptOutputType.INTEGER, new String[] {agentHolds, KageKeys.holdExpiry(agentHolds),
                    keys.agentTaskHolds(request.agent(), request.taskId())}, request.jobId(), id);
            return first.hold(id, request, tenantPools, List.of());
        }
        if (agentLimits.isNone()) {
            return first.hold(id, request, tenantPools, List.of());
        }
        List<Pool> agentPools = List.of(
                new Pool(PoolKind.AGENT, request.agent(), Period.DAY.id(now), keys.agentBudget(request.agent(), Period.DAY.id(now))),
                new Pool(PoolKind.AGENT, request.agent(), Period.MONTH.id(now), keys.agentBudget(request.agent(), Period.MONTH.id(now))));
        List<String> agentArgs = new ArrayList<>();
        addPeriodArgs(agentArgs, agentLimits);
        Step second;
        try {
            second = reserveStep(id, request, keys.agentHolds(request.agent()),
                    keys.agentTaskHolds(request.agent(), request.taskId()), BOOKKEEPING_TTL,
                    keys.agentBudgetLimits(request.agent()), agentPools, agentArgs);
        } catch (RuntimeException e) {
            // The second step failed (Redis went away between the two): the first is given back if Redis lets us,
            // else it lapses.
            try {
                settleStep(null, id, tenantHolds, taskPool, tenantPools, 0, 0, new ArrayList<>());
            } catch (RuntimeException alsoDown) {
                e.addSuppressed(alsoDown);
            }
            throw e;
        }
        if (second.status() == 0) {
            // Compensate: the tenant's pools get their hold back; this hold id is spent.
            settleStep(null, id, tenantHolds, taskPool, tenantPools, 0, 0, new ArrayList<>());
            Hold refused = second.hold(id, request, tenantPools, agentPools);
            return refused;
        }
        List<PoolState> states = new ArrayList<>(first.states());
        states.addAll(second.states());
        return new Hold(id, request.tenant(), request.agent(), request.tokens(), request.usdMicros(), tenantPools, agentPools,
                first.status() == 2 && second.status() == 2 ? HoldStatus.DUPLICATE : HoldStatus.HELD, null, states,
                first.superseded() + second.superseded(), request.holdFor());
    }

    private void addPeriodArgs(List<String> args, PeriodLimits limits) {
        for (Period period : Period.values()) {
            args.add(Long.toString(limits.tokens(period)));
            args.add(Long.toString(limits.usdMicros(period)));
            args.add(period.wireName() + "_");
            args.add(Long.toString(period.poolTtl().toMillis()));
        }
    }

    /**
     * @param marker    the hash keeping the step's {@code j:<job>} and {@code s:<hold>} bookkeeping: the task's pool for the
     *                  tenant's step, the task's hash under the agent's tag for the agent's (never a period's pool: a hold
     *                  taken before midnight must be found after it)
     * @param markerTtl how long the marker lives after this change ({@link Duration#ZERO}: it is one of the pools)
     */
    private Step reserveStep(String id, HoldRequest request, String holds, String marker, Duration markerTtl, String limits,
                             List<Pool> pools, List<String> poolArgs) {
        register(holds);
        String[] keyArray = new String[4 + pools.size()];
        keyArray[0] = holds;
        keyArray[1] = KageKeys.holdExpiry(holds);
        keyArray[2] = marker;
        keyArray[3] = limits;
        for (int i = 0; i < pools.size(); i++) {
            keyArray[4 + i] = pools.get(i).key();
        }
        List<String> args = new ArrayList<>(List.of(id, request.jobId(), Long.toString(request.tokens()),
                Long.toString(request.usdMicros()), mode.name().toLowerCase(), Long.toString(request.holdFor().toMillis()),
                Long.toString(markerTtl.toMillis())));
        args.addAll(poolArgs);
        List<Object> reply = RESERVE.run(redis, ScriptOutputType.MULTI, keyArray, args.toArray(String[]::new));
        List<PoolState> states = new ArrayList<>();
        for (int i = 0; i < pools.size(); i++) {
            int at = 5 + 6 * i;
            states.add(new PoolState(pools.get(i), n(reply, at), n(reply, at + 1), n(reply, at + 2), n(reply, at + 3),
                    n(reply, at + 4), n(reply, at + 5)));
        }
        int status = (int) n(reply, 0);
        Refusal refusal = null;
        if (status == 0) {
            int index = (int) n(reply, 1) - 1;
            String kind = String.valueOf(reply.get(2));
            PoolState state = states.get(index);
            boolean usd = kind.equals("usd");
            refusal = new Refusal(state.pool(), usd, usd ? request.usdMicros() : request.tokens(),
                    usd ? state.usdUsedMicros() : state.used(), usd ? state.usdReservedMicros() : state.reserved(),
                    usd ? state.usdLimitMicros() : state.limit());
        }
        return new Step(status, refusal, states, (int) n(reply, 3));
    }

    /** One script's answer to a reservation. */
    private record Step(int status, Refusal refusal, List<PoolState> states, int superseded) {
        Hold hold(String id, HoldRequest request, List<Pool> tenantPools, List<Pool> agentPools) {
            HoldStatus holdStatus = status == 0 ? HoldStatus.REFUSED : status == 2 ? HoldStatus.DUPLICATE : HoldStatus.HELD;
            return new Hold(id, request.tenant(), request.agent(), request.tokens(), request.usdMicros(), tenantPools,
                    holdStatus == HoldStatus.REFUSED ? List.of() : agentPools, holdStatus, refusal, states, superseded,
                    request.holdFor());
        }
    }

    /**
     * Replaces the hold with the usage it came to, in every pool it held. The first call counts; a repeated
     * one changes nothing and says so. Usage is counted even when the hold had lapsed or was refused.
     *
     * <p>The hold's record in Redis decides which pools are released and charged: those it was taken in (a hold
     * taken at 23:59 UTC and settled after midnight is released from and charged to the day it was taken in, in
     * the tenant's and the agent's pools alike), whatever pools {@code hold} names (a copy returned by a replayed
     * reservation after midnight names the new day's). Only a hold with no record left (lapsed, superseded by a
     * reclaiming worker) is charged to the pools {@code hold} names. The answer names the pools charged.
     */
    public Settlement settle(Hold hold, long tokens, long usdMicros) {
        String tenantHolds = keys.tenantHolds(hold.tenant());
        List<PoolSettlement> pools = new ArrayList<>();
        boolean first = settleStep(hold, hold.id(), tenantHolds, hold.tenantPools().getFirst().key(), hold.tenantPools(), tokens,
                usdMicros, pools);
        if (!hold.agentPools().isEmpty()) {
            settleStep(hold, hold.id(), keys.agentHolds(hold.agent()), keys.agentTaskHolds(hold.agent(), hold.taskId()),
                    hold.agentPools(), tokens, usdMicros, pools);
        }
        return new Settlement(first, tokens, usdMicros, pools);
    }

    /** Gives the hold back unused: the job did not run (or ran and used nothing). */
    public Settlement release(Hold hold) {
        return settle(hold, 0, 0);
    }

    /** @param hold the hold whose pools {@code out} names (null: report nothing) */
    private boolean settleStep(Hold hold, String id, String holds, String marker, List<Pool> pools, long tokens,
                               long usdMicros, List<PoolSettlement> out) {
        String[] keyArray = new String[3 + pools.size()];
        keyArray[0] = holds;
        keyArray[1] = KageKeys.holdExpiry(holds);
        keyArray[2] = marker;
        for (int i = 0; i < pools.size(); i++) {
            keyArray[3 + i] = pools.get(i).key();
        }
        List<Object> reply = SETTLE.run(redis, ScriptOutputType.MULTI, keyArray, id, Long.toString(tokens),
                Long.toString(usdMicros), Double.toString(warningThreshold), Long.toString(BOOKKEEPING_TTL.toMillis()));
        // A compensating release (no Hold yet) reports nothing.
        int charged = hold == null ? 0 : (int) n(reply, 1);
        for (int i = 0; i < charged; i++) {
            int at = 2 + 6 * i;
            out.add(new PoolSettlement(pool(hold, String.valueOf(reply.get(at))), n(reply, at + 1), n(reply, at + 2),
                    n(reply, at + 3), n(reply, at + 4), (int) n(reply, at + 5)));
        }
        return n(reply, 0) == 1;
    }

    /**
     * The pool of {@code hold}'s tenant or agent stored under {@code key}: one {@code hold} names, else one its record
     * names (another period's).
     */
    private Pool pool(Hold hold, String key) {
        for (List<Pool> pools : List.of(hold.tenantPools(), hold.agentPools())) {
            for (Pool pool : pools) {
                if (pool.key().equals(key)) {
                    return pool;
                }
            }
        }
        String agentPrefix = keys.agentBudget(hold.agent(), "");
        if (key.startsWith(agentPrefix)) {
            return new Pool(PoolKind.AGENT, hold.agent(), key.substring(agentPrefix.length()), key);
        }
        String tenantPrefix = keys.tenantBudget(hold.tenant(), "");
        String rest = key.startsWith(tenantPrefix) ? key.substring(tenantPrefix.length()) : key;
        String taskPrefix = keys.taskBudget(hold.tenant(), "").substring(tenantPrefix.length());
        return rest.startsWith(taskPrefix) ? new Pool(PoolKind.TASK, rest.substring(taskPrefix.length()), null, key)
                : new Pool(PoolKind.TENANT, hold.tenant(), rest, key);
    }

    /**
     * Grows an open hold while its agent runs: by {@code wantTokens} / {@code wantUsdMicros} when every pool has
     * room, else by what is needed or half of what is left when that is more (the jobs beside it draw on the same
     * pools), else refuses (in enforce mode; log mode always grows). A negative amount gives tokens back.
     */
    public TopUp topUp(Hold hold, long needTokens, long wantTokens, long needUsdMicros, long wantUsdMicros) {
        TopUp first = topUpStep(hold, keys.tenantHolds(hold.tenant()), hold.tenantPools(), needTokens, wantTokens,
                needUsdMicros, wantUsdMicros);
        if (!first.granted() || hold.agentPools().isEmpty()) {
            return first;
        }
        // The agent's pools are asked for what is needed at least and what the tenant's granted at most.
        TopUp second = topUpStep(hold, keys.agentHolds(hold.agent()), hold.agentPools(), needTokens, first.tokens(),
                needUsdMicros, first.usdMicros());
        long backTokens = second.granted() ? first.tokens() - second.tokens() : first.tokens();
        long backUsd = second.granted() ? first.usdMicros() - second.usdMicros() : first.usdMicros();
        if (backTokens != 0 || backUsd != 0) {
            topUpStep(hold, keys.tenantHolds(hold.tenant()), hold.tenantPools(), -backTokens, -backTokens, -backUsd, -backUsd);
        }
        return second;
    }

    /**
     * Renews the hold's lifetime from now (its agent is starting: however long the worktree took, the hold lives as
     * long as the run may).
     *
     * @return false when the hold is no longer open (it lapsed or was released): reserve again
     */
    public boolean renew(Hold hold) {
        return !topUp(hold, 0, 0, 0, 0).lapsed();
    }

    private TopUp topUpStep(Hold hold, String holds, List<Pool> pools, long needTokens, long wantTokens, long needUsd,
                            long wantUsd) {
        return topUpStep(hold, holds, pools, needTokens, wantTokens, needUsd, wantUsd,
                callIdPrefix + topUpCalls.incrementAndGet());
    }

    /**
     * One top-up script call; {@code callId}, unique among this process's calls, makes a call Lettuce sends again after
     * a reconnect (its reply lost) grow the hold once.
     */
    TopUp topUpStep(Hold hold, String holds, List<Pool> pools, long needTokens, long wantTokens, long needUsd,
                    long wantUsd, String callId) {
        String[] keyArray = new String[2 + pools.size()];
        keyArray[0] = holds;
        keyArray[1] = KageKeys.holdExpiry(holds);
        for (int i = 0; i < pools.size(); i++) {
            keyArray[2 + i] = pools.get(i).key();
        }
        List<Object> reply = TOP_UP.run(redis, ScriptOutputType.MULTI, keyArray, hold.id(), Long.toString(needTokens),
                Long.toString(wantTokens), Long.toString(needUsd), Long.toString(wantUsd), mode.name().toLowerCase(),
                Long.toString(hold.holdFor().toMillis()), callId);
        int status = (int) n(reply, 0);
        String tight = String.valueOf(reply.get(3));
        return new TopUp(status == 1, status == -1, n(reply, 1), n(reply, 2), tight.isEmpty() ? null : pool(hold, tight),
                n(reply, 4), reply.size() > 5 && "usd".equals(String.valueOf(reply.get(5))));
    }

    /**
     * Releases holds whose lifetime is over in every holds hash in use: holds of workers that died and whose
     * jobs were never delivered again. Reservations sweep their own tenant as they go; this reaches the rest.
     *
     * @return holds released
     */
    public int sweepExpired() {
        int released = 0;
        for (String holds : redis.smembers(keys.holdSets())) {
            long n;
            do {
                n = SWEEP.<Long>run(redis, ScriptOutputType.INTEGER, new String[] {holds, KageKeys.holdExpiry(holds)},
                        Integer.toString(SWEEP_BATCH));
                released += (int) n;
            } while (n == SWEEP_BATCH);
        }
        return released;
    }

    private void register(String holds) {
        if (registeredHoldSets.add(holds)) {
            redis.sadd(keys.holdSets(), holds);
        }
    }

    /** The task's pool, or an empty one of {@code tokenLimit} when none exists yet. */
    public PoolState taskPool(String tenant, String taskId, long tokenLimit, long usdLimitMicros) {
        Pool pool = new Pool(PoolKind.TASK, taskId, null, keys.taskBudget(tenant, taskId));
        return read(pool, tokenLimit, usdLimitMicros);
    }

    /** A pool's figures as Redis has them now, its limits as it stores them (0: none, or no such pool). */
    public PoolState current(Pool pool) {
        return read(pool, 0, 0);
    }

    /** The tenant's pools of the current day and month, with their limits as they apply now. */
    public List<PoolState> tenantPools(String tenant) {
        PeriodLimits limits = tenantLimits(tenant);
        Instant now = clock.instant();
        List<PoolState> pools = new ArrayList<>();
        for (Period period : Period.values()) {
            Pool pool = new Pool(PoolKind.TENANT, tenant, period.id(now), keys.tenantBudget(tenant, period.id(now)));
            pools.add(read(pool, limits.tokens(period), limits.usdMicros(period)).withLimits(limits.tokens(period),
                    limits.usdMicros(period)));
        }
        return pools;
    }

    /**
     * {@link #tenantPools} on a pipeline's connection, for a caller that sends it with other commands: the limits and
     * both pools are read together (one round trip's wait instead of three).
     * The fleet's defaults are read in the same round trip, not through {@link #tenantDefaults()}'s cache (which may
     * wait for Redis: the pipeline's thread must not).
     */
    public java.util.concurrent.CompletableFuture<List<PoolState>> tenantPools(
            io.lettuce.core.api.async.RedisAsyncCommands<String, String> async, String tenant) {
        Instant now = clock.instant();
        var stored = async.hgetall(keys.budgetDefaults());
        var overrides = async.hgetall(keys.tenantBudgetLimits(tenant));
        List<Pool> pools = new ArrayList<>();
        List<io.lettuce.core.RedisFuture<List<io.lettuce.core.KeyValue<String, String>>>> replies = new ArrayList<>();
        for (Period period : Period.values()) {
            Pool pool = new Pool(PoolKind.TENANT, tenant, period.id(now), keys.tenantBudget(tenant, period.id(now)));
            pools.add(pool);
            replies.add(async.hmget(pool.key(), POOL_FIELDS));
        }
        return overrides.toCompletableFuture().thenCompose(limitsSet -> dev.kage.redis.RedisPipeline
                .all(replies.toArray(io.lettuce.core.RedisFuture[]::new)).thenCombine(stored, (done, fleet) -> {
                    PeriodLimits limits = apply(defaults.tenantFrom(fleet), limitsSet);
                    List<PoolState> states = new ArrayList<>();
                    Period[] periods = Period.values();
                    for (int i = 0; i < periods.length; i++) {
                        long tokens = limits.tokens(periods[i]);
                        long usd = limits.usdMicros(periods[i]);
                        states.add(state(pools.get(i), replies.get(i).toCompletableFuture().join(), tokens, usd)
                                .withLimits(tokens, usd));
                    }
                    return states;
                }));
    }

    /**
     * The agent's pools of the current day and month.
     *
     * @param configured the agent's {@code budget:} in this process's {@code agents.yml}; the fleet's applies
     */
    public List<PoolState> agentPools(String agent, PeriodLimits configured) {
        Map<String, String> overrides = redis.hgetall(keys.agentBudgetLimits(agent));
        PeriodLimits limits = apply(defaults.agent(agent, configured), overrides);
        Instant now = clock.instant();
        List<PoolState> pools = new ArrayList<>();
        for (Period period : Period.values()) {
            Pool pool = new Pool(PoolKind.AGENT, agent, period.id(now), keys.agentBudget(agent, period.id(now)));
            pools.add(read(pool, limits.tokens(period), limits.usdMicros(period)).withLimits(limits.tokens(period),
                    limits.usdMicros(period)));
        }
        return pools;
    }

    /** The limits of the tenant's period pools: an operator's, else the fleet's defaults. */
    public PeriodLimits tenantLimits(String tenant) {
        return apply(defaults.tenant(), redis.hgetall(keys.tenantBudgetLimits(tenant)));
    }

    /** The fields of the tenant's limits an operator set, as Redis holds them ({@link #DAY_TOKENS} ...); empty for none. */
    public Map<String, Long> tenantLimitFields(String tenant) {
        Map<String, Long> fields = new java.util.TreeMap<>();
        redis.hgetall(keys.tenantBudgetLimits(tenant)).forEach((field, value) -> {
            try {
                fields.put(field, Long.parseLong(value));
            } catch (NumberFormatException e) {
                fields.put(field, -1L); // unlike any stored value: a restore writes it anew
            }
        });
        return fields;
    }

    /** True when an operator set the tenant's limits (rather than the fleet's defaults applying). */
    public boolean hasTenantLimits(String tenant) {
        return redis.exists(keys.tenantBudgetLimits(tenant)) == 1;
    }

    /**
     * Sets the tenant's period limits for the whole fleet at once: the next reservation applies them, and so do the
     * holds already open (their top-ups and settlements).
     */
    public void setTenantLimits(String tenant, PeriodLimits limits) {
        setTenantLimits(tenant, Map.of(DAY_TOKENS, limits.dayTokens(), DAY_USD, limits.dayUsdMicros(),
                MONTH_TOKENS, limits.monthTokens(), MONTH_USD, limits.monthUsdMicros()));
    }

    /** Fields of a tenant's limits in Redis: tokens, and micro-USD; 0 is no limit. */
    public static final String DAY_TOKENS = "day_tokens";
    public static final String DAY_USD = "day_usd";
    public static final String MONTH_TOKENS = "month_tokens";
    public static final String MONTH_USD = "month_usd";

    /**
     * Changes some of a tenant's limits ({@link #DAY_TOKENS} …), an {@code HSET} of those fields only: the others keep
     * following the fleet's defaults or an earlier change. In the same script call the tenant's current day and month
     * pools take the limits that now apply: a running agent's top-up meets the new limit, not the one its reservation
     * saw (raised, it was stopped for a budget already lifted; lowered, it ran on past it). Nothing is written for no
     * fields.
     */
    public void setTenantLimits(String tenant, Map<String, Long> fields) {
        if (fields.isEmpty()) {
            return;
        }
        List<String> args = limitArgs("set");
        fields.forEach((field, value) -> {
            if (!List.of(DAY_TOKENS, DAY_USD, MONTH_TOKENS, MONTH_USD).contains(field) || value < 0) {
                throw new IllegalArgumentException("not a tenant limit: " + field + "=" + value);
            }
            args.add(field);
            args.add(Long.toString(value));
        });
        SET_LIMITS.run(redis, ScriptOutputType.INTEGER, limitKeys(tenant), args.toArray(String[]::new));
    }

    /** Back to the fleet's defaults ({@code TENANT_MAX_*}), for the holds already open too. */
    public void clearTenantLimits(String tenant) {
        SET_LIMITS.run(redis, ScriptOutputType.INTEGER, limitKeys(tenant), limitArgs("clear").toArray(String[]::new));
    }

    private String[] limitKeys(String tenant) {
        Instant now = clock.instant();
        return new String[] {keys.tenantBudgetLimits(tenant), keys.tenantBudget(tenant, Period.DAY.id(now)),
                keys.tenantBudget(tenant, Period.MONTH.id(now))};
    }

    private List<String> limitArgs(String action) {
        PeriodLimits tenantDefaults = defaults.tenant();
        return new ArrayList<>(List.of(action, Long.toString(tenantDefaults.dayTokens()),
                Long.toString(tenantDefaults.dayUsdMicros()), Long.toString(tenantDefaults.monthTokens()),
                Long.toString(tenantDefaults.monthUsdMicros())));
    }

    /** Every tenant's default limits as the fleet applies them now ({@link FleetBudgetDefaults#tenant}). */
    public PeriodLimits tenantDefaults() {
        return defaults.tenant();
    }

    /** The fleet's default limits: what this ledger applies where no operator set a tenant's or an agent's. */
    public FleetBudgetDefaults defaults() {
        return defaults;
    }

    private static PeriodLimits apply(PeriodLimits base, Map<String, String> overrides) {
        if (overrides.isEmpty()) {
            return base;
        }
        return new PeriodLimits(
                parse(overrides.get(DAY_TOKENS), base.dayTokens()), parse(overrides.get(DAY_USD), base.dayUsdMicros()),
                parse(overrides.get(MONTH_TOKENS), base.monthTokens()), parse(overrides.get(MONTH_USD), base.monthUsdMicros()));
    }

    private static long parse(String value, long fallback) {
        return value == null ? fallback : Long.parseLong(value);
    }

    private PoolState read(Pool pool, long tokenLimit, long usdLimitMicros) {
        return state(pool, redis.hmget(pool.key(), POOL_FIELDS), tokenLimit, usdLimitMicros);
    }

    private static final String[] POOL_FIELDS = {"limit", "used", "reserved", "usd_limit", "usd_used", "usd_reserved"};

    private static PoolState state(Pool pool, List<io.lettuce.core.KeyValue<String, String>> f, long tokenLimit, long usdLimitMicros) {
        return new PoolState(pool, value(f.get(0), tokenLimit), value(f.get(1), 0), value(f.get(2), 0), value(f.get(3), usdLimitMicros),
                value(f.get(4), 0), value(f.get(5), 0));
    }

    private static long value(io.lettuce.core.KeyValue<String, String> kv, long fallback) {
        return kv.hasValue() ? Long.parseLong(kv.getValue()) : fallback;
    }

    private static long n(List<Object> reply, int index) {
        Object value = reply.get(index);
        return value instanceof Long l ? l : Long.parseLong(String.valueOf(value));
    }

    /** Which kind of owner a pool has. */
    public enum PoolKind {
        TASK("task"), TENANT("tenant"), AGENT("agent");

        private final String wireName;

        PoolKind(String wireName) {
            this.wireName = wireName;
        }

        public String wireName() {
            return wireName;
        }
    }

    /**
     * One pool.
     *
     * @param kind   task, tenant or agent
     * @param owner  the task id, tenant or agent
     * @param period e.g. {@code day:2026-11-28}; null for a task's pool
     * @param key    its Redis key
     */
    public record Pool(PoolKind kind, String owner, String period, String key) {
        /** How a message names it: {@code task}, {@code tenant acme day:2026-11-28}. */
        public String describe() {
            return kind == PoolKind.TASK ? "task" : kind.wireName() + " " + owner + " " + period;
        }
    }

    /**
     * What one reservation asks for.
     *
     * @param jobId              one delivery of one attempt of a job; a hold for the same id by another holder
     *                           releases the earlier one
     * @param holder             the worker holding it
     * @param tokens             tokens to hold
     * @param usdMicros          micro-USD to hold
     * @param taskTokenLimit     the task's pool size, applied when the pool is new
     * @param taskUsdLimitMicros the task's dollar limit (0: none), applied when the pool is new
     * @param agentLimits        the agent's own period limits ({@link PeriodLimits#NONE}: no second step)
     * @param holdFor            how long the hold lives unless settled
     */
    public record HoldRequest(String tenant, String taskId, String agent, String jobId, String holder, long tokens, long usdMicros,
                              long taskTokenLimit, long taskUsdLimitMicros, PeriodLimits agentLimits, Duration holdFor) {
    }

    public enum HoldStatus {
        /** Held now. */
        HELD,
        /** Held or settled before under the same id; nothing changed. */
        DUPLICATE,
        /** A pool has no room (enforce mode); nothing is held. */
        REFUSED
    }

    /**
     * A reservation.
     *
     * @param states     the pools' figures as the scripts left them
     * @param superseded earlier holds of the same job (by a worker that died) released by this one
     */
    public record Hold(String id, String tenant, String agent, long tokens, long usdMicros, List<Pool> tenantPools,
                       List<Pool> agentPools, HoldStatus status, Refusal refusal, List<PoolState> states, int superseded,
                       Duration holdFor) {
        public boolean accepted() {
            return status != HoldStatus.REFUSED;
        }

        /** The task whose pool the hold draws on. */
        public String taskId() {
            return tenantPools.getFirst().owner();
        }

        /** The task pool's figures. */
        public PoolState taskPool() {
            return states.getFirst();
        }
    }

    /**
     * Why a hold was refused: the pool that has no room.
     *
     * @param usd       the dollar limit refused it (else the token limit)
     * @param requested tokens or micro-USD asked for
     * @param used      settled in the pool
     * @param reserved  held by others
     * @param limit     the pool's limit
     */
    public record Refusal(Pool pool, boolean usd, long requested, long used, long reserved, long limit) {
        /** What the pool would have come to. */
        public long wouldUse() {
            return used + reserved + requested;
        }
    }

    /**
     * A pool's figures: tokens and micro-USD limited, settled and held.
     */
    public record PoolState(Pool pool, long limit, long used, long reserved, long usdLimitMicros, long usdUsedMicros,
                            long usdReservedMicros) {
        public long remaining() {
            return limit == 0 ? Long.MAX_VALUE : limit - used - reserved;
        }

        public long usdRemainingMicros() {
            return usdLimitMicros == 0 ? Long.MAX_VALUE : usdLimitMicros - usdUsedMicros - usdReservedMicros;
        }

        PoolState withLimits(long tokens, long usdMicros) {
            return new PoolState(pool, tokens, used, reserved, usdMicros, usdUsedMicros, usdReservedMicros);
        }
    }

    /**
     * A pool after a settlement.
     *
     * @param flags bits: 1 token warning issued now, 2 dollar warning now, 4 token warning issued (ever this period),
     *              8 dollar warning issued, 16 token limit first passed now, 32 dollar limit first passed now
     */
    public record PoolSettlement(Pool pool, long limit, long used, long usdLimitMicros, long usdUsedMicros, int flags) {
        public boolean warningNow() {
            return (flags & 1) != 0;
        }

        public boolean usdWarningNow() {
            return (flags & 2) != 0;
        }

        public boolean warningIssued() {
            return (flags & 4) != 0;
        }

        public boolean usdWarningIssued() {
            return (flags & 8) != 0;
        }

        public boolean exceededNow() {
            return (flags & 16) != 0;
        }

        public boolean usdExceededNow() {
            return (flags & 32) != 0;
        }

        public boolean exceeded() {
            return limit > 0 && used > limit;
        }

        public boolean usdExceeded() {
            return usdLimitMicros > 0 && usdUsedMicros > usdLimitMicros;
        }

        /** Percentage of the token limit used, one decimal like the seed's {@code percent_used}. */
        public double percentUsed() {
            return limit == 0 ? 0 : Math.round(1000.0 * used / limit) / 10.0;
        }
    }

    /**
     * The answer to a settlement.
     *
     * @param firstTime this call settled the hold (false: it had been settled before; nothing changed)
     * @param pools     every pool of the hold, task pool first
     */
    public record Settlement(boolean firstTime, long tokens, long usdMicros, List<PoolSettlement> pools) {
        public PoolSettlement task() {
            return pools.getFirst();
        }
    }

    /**
     * The answer to a top-up.
     *
     * @param granted   the hold grew by {@code tokens} and {@code usdMicros}
     * @param lapsed    the hold was no longer open (lapsed or released)
     * @param tightest  the pool with the least room, when one is limited
     * @param roomLeft  tokens left in that pool before this top-up
     */
    /**
     * @param tightest the pool with the least room for tokens; on a refusal, the pool that refused
     * @param roomLeft what {@code tightest} has left: tokens, or micro-USD when {@code usd}
     * @param usd      the refusal was for dollars (the pool's token room would have done)
     */
    public record TopUp(boolean granted, boolean lapsed, long tokens, long usdMicros, Pool tightest, long roomLeft,
                        boolean usd) {
    }
}
