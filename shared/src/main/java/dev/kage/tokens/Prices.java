package dev.kage.tokens;

import java.math.BigDecimal;
import java.math.RoundingMode;

/**
 * A model's prices in USD per 1M tokens, from the agents' configuration ({@code prices:}); used when an agent
 * reports no cost of its own, and to estimate what a run will cost before it starts. Immutable.
 *
 * @param input      prompt tokens
 * @param output     generated tokens
 * @param cacheRead  prompt tokens served from the provider's cache (default: the input price)
 * @param cacheWrite prompt tokens written to the provider's cache (default: the input price)
 */
public record Prices(double input, double output, double cacheRead, double cacheWrite) {
    public static final Prices FREE = new Prices(0, 0, 0, 0);

    /** Input and output prices; cache tokens priced as input. */
    public static Prices of(double input, double output) {
        return new Prices(input, output, input, input);
    }

    public boolean isFree() {
        return input == 0 && output == 0 && cacheRead == 0 && cacheWrite == 0;
    }

    /** What the tokens cost, USD with 6 decimals (rounded half up). */
    public BigDecimal cost(long inputTokens, long outputTokens, long cacheReadTokens, long cacheWriteTokens) {
        return BigDecimal.valueOf(inputTokens).multiply(BigDecimal.valueOf(input))
                .add(BigDecimal.valueOf(outputTokens).multiply(BigDecimal.valueOf(output)))
                .add(BigDecimal.valueOf(cacheReadTokens).multiply(BigDecimal.valueOf(cacheRead)))
                .add(BigDecimal.valueOf(cacheWriteTokens).multiply(BigDecimal.valueOf(cacheWrite)))
                .divide(BigDecimal.valueOf(1_000_000), 6, RoundingMode.HALF_UP);
    }

    /** Micro-USD of {@code inputTokens} and {@code outputTokens}, rounded up: what a reservation holds. */
    public long estimateMicros(long inputTokens, long outputTokens) {
        return (long) Math.ceil(inputTokens * input + outputTokens * output);
    }
}
