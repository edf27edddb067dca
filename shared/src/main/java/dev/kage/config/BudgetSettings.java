package dev.kage.config;

import dev.kage.budget.PeriodLimits;
import java.math.BigDecimal;
import java.time.Duration;
import java.util.Optional;

/**
 * Budgets beyond the seed's per-task pool. Immutable.
 *
 * @param tenantDefaults every tenant's limits per UTC day and month unless an operator sets others through
 *                       {@code PUT /api/v1/budgets/{tenant}}: {@code TENANT_MAX_TOKENS_PER_DAY},
 *                       {@code TENANT_MAX_TOKENS_PER_MONTH} (tokens), {@code TENANT_MAX_USD_PER_DAY},
 *                       {@code TENANT_MAX_USD_PER_MONTH} (USD, e.g. {@code 25.50}); 0 or unset: no limit
 * @param holdGrace      how much longer than its job's timeout a reservation lives when it is never settled
 *                       ({@code BUDGET_HOLD_GRACE_SECONDS}, default 600: worktree, permit wait, commit and push)
 */
public record BudgetSettings(PeriodLimits tenantDefaults, Duration holdGrace) {
    public static final long DEFAULT_HOLD_GRACE_SECONDS = 600;
    /**
     * The most tokens any limit may name (10^15): the ledger's scripts count in Lua numbers (doubles), exact only up to
     * 2^53, and a limit past 2^63 was stored as a negative number, that is as no limit at all.
     */
    public static final long MAX_TOKENS = 1_000_000_000_000_000L;
    /** The longest {@code BUDGET_HOLD_GRACE_SECONDS}: 30 days. */
    public static final long MAX_HOLD_GRACE_SECONDS = 30L * 24 * 3600;

    static BudgetSettings load(Env env) {
        PeriodLimits defaults = new PeriodLimits(
                tokens(env, "TENANT_MAX_TOKENS_PER_DAY"), usd(env, "TENANT_MAX_USD_PER_DAY"),
                tokens(env, "TENANT_MAX_TOKENS_PER_MONTH"), usd(env, "TENANT_MAX_USD_PER_MONTH"));
        return new BudgetSettings(defaults, Duration.ofSeconds(env.longBetween("BUDGET_HOLD_GRACE_SECONDS", 1,
                MAX_HOLD_GRACE_SECONDS, DEFAULT_HOLD_GRACE_SECONDS)));
    }

    private static long tokens(Env env, String name) {
        Optional<String> raw = env.get(name);
        if (raw.isEmpty() || raw.get().isBlank()) {
            return 0;
        }
        try {
            long value = Long.parseLong(raw.get().strip());
            if (value >= 0 && value <= MAX_TOKENS) {
                return value;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be a whole number of tokens up to " + MAX_TOKENS
                + " (10^15), 0 for no limit");
    }

    private static long usd(Env env, String name) {
        Optional<String> raw = env.get(name);
        if (raw.isEmpty() || raw.get().isBlank()) {
            return 0;
        }
        try {
            BigDecimal value = new BigDecimal(raw.get().strip());
            if (value.signum() >= 0 && value.compareTo(BigDecimal.valueOf(1_000_000_000L)) <= 0) {
                return PeriodLimits.micros(value);
            }
        } catch (NumberFormatException | ArithmeticException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be an amount of US dollars such as 25.50, 0 for no limit");
    }
}
