package dev.kage.budget;

import dev.kage.redis.KageKeys;
import dev.kage.redis.LuaScript;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The period limits that apply where no operator set others, one set for the whole fleet: every tenant's
 * ({@code TENANT_MAX_*}) and each agent's own ({@code budget:} in {@code agents.yml}), stored in
 * {@link KageKeys#budgetDefaults()}.
 *
 * <p>Each process reads its own configuration, and a reservation writes the limits it applies into the pools. Were
 * each worker to apply its own, two workers configured differently (a rolling change of
 * {@code TENANT_MAX_USD_PER_DAY}, one machine's stale {@code agents.yml}) would set a pool's limit back and forth, job by
 * job: the same job granted on one worker and refused on the next. So a worker publishes its configuration when it
 * starts ({@link #publish}: the last started wins, as a rate limit's configuration does; each scope remembers its
 * publisher's start, so a publication Redis could only take late never undoes a later worker's), and every process,
 * the coordinator included, applies what is stored. Where nothing is stored for a scope (Redis lost its data) the first
 * worker to look stores its own configuration, and the others follow it; a process that never published (the
 * coordinator) stores nothing and applies its own configuration until a worker has stored one.
 *
 * <p>What is stored is read at most every {@link #MAX_AGE}: a published change reaches every process within that time.
 * A process whose configuration differs from what it applies says so once per difference (WARN). Thread-safe.
 */
public final class FleetBudgetDefaults {
    /** How long a read of the stored defaults is used before the next. */
    public static final Duration MAX_AGE = Duration.ofSeconds(1);
    private static final Logger LOG = LoggerFactory.getLogger(FleetBudgetDefaults.class);
    private static final LuaScript STORE = LuaScript.load(FleetBudgetDefaults.class, "defaults.lua");
    private static final String TENANT = "tenant";
    /** A scope's fields, in {@link PeriodLimits}'s order. */
    private static final List<String> FIELDS = List.of(BudgetLedger.DAY_TOKENS, BudgetLedger.DAY_USD,
            BudgetLedger.MONTH_TOKENS, BudgetLedger.MONTH_USD);
    private static final List<String> TENANT_VARIABLES = List.of("TENANT_MAX_TOKENS_PER_DAY", "TENANT_MAX_USD_PER_DAY",
            "TENANT_MAX_TOKENS_PER_MONTH", "TENANT_MAX_USD_PER_MONTH");

    private final String key;
    private final RedisCommands<String, String> redis;
    private final PeriodLimits tenantConfigured;
    private final long maxAgeNanos;
    private final LongSupplier nanoTime;
    /** The stored hash as last read, and when (nanoTime); null before the first read. */
    private volatile Snapshot snapshot;
    /** A publication Redis did not take (it was down when the worker started), made at the next read. */
    private volatile Map<String, PeriodLimits> unpublished;
    /** When this worker first published (ms since the epoch); 0: never, as for the coordinator, which stores nothing. */
    private volatile long publishedAt;
    /** Scopes whose difference from this process's configuration was logged, with the stored limits logged. */
    private final Map<String, PeriodLimits> warned = new java.util.concurrent.ConcurrentHashMap<>();

    private record Snapshot(Map<String, String> fields, long readAt) {
    }

    /**
     * @param tenantConfigured this process's {@code TENANT_MAX_*}
     * @param maxAge           how long a read is used ({@link #MAX_AGE}; tests use zero)
     */
    public FleetBudgetDefaults(KageKeys keys, RedisCommands<String, String> redis, PeriodLimits tenantConfigured,
                               Duration maxAge) {
        this(keys, redis, tenantConfigured, maxAge, System::nanoTime);
    }

    FleetBudgetDefaults(KageKeys keys, RedisCommands<String, String> redis, PeriodLimits tenantConfigured, Duration maxAge,
                        LongSupplier nanoTime) {
        this.key = keys.budgetDefaults();
        this.redis = redis;
        this.tenantConfigured = Objects.requireNonNull(tenantConfigured);
        this.maxAgeNanos = maxAge.toNanos();
        this.nanoTime = nanoTime;
    }

    /** This process's own {@code TENANT_MAX_*}, whatever the fleet applies. */
    public PeriodLimits tenantConfigured() {
        return tenantConfigured;
    }

    /** Every tenant's default limits as the fleet applies them now. Reads Redis at most every {@link #MAX_AGE}. */
    public PeriodLimits tenant() {
        return applied(TENANT, tenantConfigured);
    }

    /**
     * Every tenant's default limits in {@code stored} (the hash as a caller read it, e.g. pipelined with other commands),
     * or this process's own where it holds none. Neither reads nor writes Redis, nor logs.
     */
    public PeriodLimits tenantFrom(Map<String, String> stored) {
        return stored.containsKey(TENANT + ":" + FIELDS.getFirst()) ? scope(stored, TENANT) : tenantConfigured;
    }

    /**
     * The agent's own limits as the fleet applies them now ({@link PeriodLimits#NONE}: the agent's pools are not used).
     *
     * @param configured the agent's {@code budget:} in this process's {@code agents.yml}
     */
    public PeriodLimits agent(String agent, PeriodLimits configured) {
        return applied(agentScope(agent), configured);
    }

    /**
     * Makes this process's configuration the fleet's, as a worker does when it starts: {@code TENANT_MAX_*} and the
     * {@code budget:} of each agent it serves. Logs what changed (INFO).
     *
     * @param agents the served agents' limits by name ({@link PeriodLimits#NONE} for one without a budget)
     * @throws io.lettuce.core.RedisException Redis did not take it; it is made again before this process next reads
     */
    public void publish(Map<String, PeriodLimits> agents) {
        if (publishedAt == 0) {
            publishedAt = System.currentTimeMillis();
        }
        unpublished = Map.copyOf(agents);
        Map<String, PeriodLimits> scopes = new LinkedHashMap<>();
        scopes.put(TENANT, tenantConfigured);
        agents.forEach((name, limits) -> scopes.put(agentScope(name), limits));
        List<String> args = new ArrayList<>(List.of("publish", Long.toString(publishedAt)));
        scopes.forEach((scope, limits) -> addGroup(args, scope, limits));
        List<Object> reply = STORE.run(redis, ScriptOutputType.MULTI, new String[] {key}, args.toArray(String[]::new));
        @SuppressWarnings("unchecked")
        List<Object> before = (List<Object>) reply.get(0);
        @SuppressWarnings("unchecked")
        List<Object> written = (List<Object>) reply.get(1);
        int at = 0;
        int index = 0;
        for (Map.Entry<String, PeriodLimits> scope : scopes.entrySet()) {
            List<String> old = new ArrayList<>();
            for (int i = 0; i < FIELDS.size(); i++) {
                old.add(String.valueOf(before.get(at++)));
            }
            if (((Number) written.get(index++)).longValue() == 0) {
                LOG.info("Budget defaults: {} stay those a worker started after this one published ({})",
                        describeScope(scope.getKey()), describe(scope.getKey(), limits(old)));
                continue;
            }
            if (old.stream().allMatch(String::isEmpty)) {
                continue;
            }
            PeriodLimits was = limits(old);
            if (!was.equals(scope.getValue())) {
                LOG.info("Budget defaults for the whole fleet: {} now {} (this process's configuration; was {})",
                        describeScope(scope.getKey()), describe(scope.getKey(), scope.getValue()), describe(scope.getKey(), was));
            }
        }
        remember(reply);
        warned.clear();
        unpublished = null;
    }

    private PeriodLimits applied(String scope, PeriodLimits own) {
        Snapshot current = snapshot;
        if (current == null || nanoTime.getAsLong() - current.readAt() >= maxAgeNanos) {
            Map<String, PeriodLimits> pending = unpublished;
            if (pending != null) {
                publish(pending);
                current = snapshot;
            } else {
                current = read();
            }
        }
        if (!current.fields().containsKey(scope + ":" + FIELDS.getFirst())) {
            if (publishedAt == 0) {
                // Not a worker (or one not started yet): its configuration applies here, and is stored nowhere.
                return own;
            }
            // Nothing stored for the scope (Redis lost it): this worker's configuration, unless another stores its own first.
            List<String> args = new ArrayList<>(List.of("absent", "0"));
            addGroup(args, scope, own);
            current = remember(STORE.run(redis, ScriptOutputType.MULTI, new String[] {key}, args.toArray(String[]::new)));
        }
        PeriodLimits fleet = scope(current.fields(), scope);
        if (fleet.equals(own)) {
            warned.remove(scope);
        } else if (!fleet.equals(warned.put(scope, fleet))) {
            LOG.warn("Budget defaults: {} here is {}, the fleet's is {} (published by a process started later, or stored "
                    + "first): this process applies the fleet's", describeScope(scope), describe(scope, own), describe(scope, fleet));
        }
        return fleet;
    }

    private static PeriodLimits scope(Map<String, String> stored, String scope) {
        List<String> values = new ArrayList<>();
        for (String field : FIELDS) {
            values.add(stored.getOrDefault(scope + ":" + field, "0"));
        }
        return limits(values);
    }

    private Snapshot read() {
        Map<String, String> fields = redis.hgetall(key);
        Snapshot read = new Snapshot(Map.copyOf(fields), nanoTime.getAsLong());
        snapshot = read;
        return read;
    }

    private Snapshot remember(List<Object> reply) {
        @SuppressWarnings("unchecked")
        List<Object> all = (List<Object>) reply.get(2);
        Map<String, String> fields = new HashMap<>();
        for (int i = 0; i + 1 < all.size(); i += 2) {
            fields.put(String.valueOf(all.get(i)), String.valueOf(all.get(i + 1)));
        }
        Snapshot read = new Snapshot(Map.copyOf(fields), nanoTime.getAsLong());
        snapshot = read;
        return read;
    }

    private static void addGroup(List<String> args, String scope, PeriodLimits limits) {
        args.add(scope);
        long[] values = {limits.dayTokens(), limits.dayUsdMicros(), limits.monthTokens(), limits.monthUsdMicros()};
        for (int i = 0; i < FIELDS.size(); i++) {
            args.add(scope + ":" + FIELDS.get(i));
            args.add(Long.toString(values[i]));
        }
    }

    /** Limits from the four fields' stored values; a value that is not a count (an operator's hand edit) is no limit. */
    private static PeriodLimits limits(List<String> values) {
        long[] n = new long[FIELDS.size()];
        for (int i = 0; i < n.length; i++) {
            try {
                n[i] = Math.max(0, Long.parseLong(values.get(i)));
            } catch (NumberFormatException e) {
                n[i] = 0;
            }
        }
        return new PeriodLimits(n[0], n[1], n[2], n[3]);
    }

    private static String agentScope(String agent) {
        return "agent:" + agent;
    }

    private static String describeScope(String scope) {
        return scope.equals(TENANT) ? "TENANT_MAX_*" : "the budget of agent '" + scope.substring("agent:".length()) + "'";
    }

    private static String describe(String scope, PeriodLimits limits) {
        long[] values = {limits.dayTokens(), limits.dayUsdMicros(), limits.monthTokens(), limits.monthUsdMicros()};
        List<String> parts = new ArrayList<>();
        for (int i = 0; i < values.length; i++) {
            String name = scope.equals(TENANT) ? TENANT_VARIABLES.get(i) : FIELDS.get(i);
            String value = values[i] == 0 ? "0 (none)"
                    : i % 2 == 1 ? "$" + PeriodLimits.usd(values[i]).stripTrailingZeros().toPlainString()
                    : Long.toString(values[i]);
            parts.add(name + "=" + value);
        }
        return String.join(", ", parts);
    }
}
