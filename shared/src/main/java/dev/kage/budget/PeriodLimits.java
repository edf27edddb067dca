package dev.kage.budget;

import java.math.BigDecimal;

/**
 * Limits of a tenant's or an agent's pools per UTC day and month, in tokens and micro-USD; 0 means no limit.
 * Immutable.
 *
 * @param dayTokens      tokens per day
 * @param dayUsdMicros   micro-USD per day
 * @param monthTokens    tokens per month
 * @param monthUsdMicros micro-USD per month
 */
public record PeriodLimits(long dayTokens, long dayUsdMicros, long monthTokens, long monthUsdMicros) {
    public static final PeriodLimits NONE = new PeriodLimits(0, 0, 0, 0);

    public PeriodLimits {
        if (dayTokens < 0 || dayUsdMicros < 0 || monthTokens < 0 || monthUsdMicros < 0) {
            throw new IllegalArgumentException("limits must not be negative");
        }
    }

    /** True when nothing is limited. */
    public boolean isNone() {
        return equals(NONE);
    }

    public long tokens(Period period) {
        return period == Period.DAY ? dayTokens : monthTokens;
    }

    public long usdMicros(Period period) {
        return period == Period.DAY ? dayUsdMicros : monthUsdMicros;
    }

    /**
     * Micro-USD of a dollar amount, rounded up: a budget never rounds a cost away. An amount below a micro-dollar
     * either way is 1 or 0 at once: rounding {@code 1e-900000000} itself would build 10^900000000 (a 500, or minutes of
     * CPU and hundreds of MB a little above that exponent).
     */
    public static long micros(BigDecimal usd) {
        if (usd.signum() != 0 && usd.abs().compareTo(ONE_MICRO) < 0) {
            return usd.signum() > 0 ? 1 : 0;
        }
        return usd.movePointRight(6).setScale(0, java.math.RoundingMode.CEILING).longValueExact();
    }

    private static final BigDecimal ONE_MICRO = new BigDecimal("0.000001");

    /** Dollars of a micro-USD amount, 6 decimals. */
    public static BigDecimal usd(long micros) {
        return BigDecimal.valueOf(micros, 6);
    }
}
