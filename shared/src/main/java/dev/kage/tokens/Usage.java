package dev.kage.tokens;

import java.math.BigDecimal;
import java.math.RoundingMode;

/**
 * What one agent run consumed. Immutable.
 *
 * @param inputTokens      prompt tokens, excluding cache reads
 * @param outputTokens     generated tokens
 * @param cacheReadTokens  prompt tokens served from the provider's cache
 * @param cacheWriteTokens prompt tokens written to the provider's cache
 * @param costUsd          USD, 6 decimals
 * @param source           where the token figures come from
 */
public record Usage(long inputTokens, long outputTokens, long cacheReadTokens, long cacheWriteTokens, BigDecimal costUsd,
                    UsageSource source) {

    /** Every token the run consumed: what a budget is charged. */
    public long totalTokens() {
        return inputTokens + outputTokens + cacheReadTokens + cacheWriteTokens;
    }

    /** Cost from a price table, USD per 1M tokens; cache tokens are priced as input. */
    public static BigDecimal price(long input, long output, double inputUsdPerMillion, double outputUsdPerMillion) {
        return BigDecimal.valueOf(input * inputUsdPerMillion + output * outputUsdPerMillion)
                .divide(BigDecimal.valueOf(1_000_000), 6, RoundingMode.HALF_UP);
    }

    /** Where a run's usage figures come from, in decreasing order of trust. */
    public enum UsageSource {
        /** The agent's own report (Claude's {@code usage}, OpenAI's {@code usage}). */
        AGENT("agent"),
        /** Counted with jtokkit from the prompt and the output. */
        TOKENIZER("tokenizer"),
        /** Characters divided by four: a last resort. */
        ESTIMATE("estimate");

        private final String wireName;

        UsageSource(String wireName) {
            this.wireName = wireName;
        }

        public String wireName() {
            return wireName;
        }
    }
}
