package dev.kage.tokens;

import java.math.BigDecimal;

/**
 * What one agent run consumed. Immutable. Figures come from agents' own reports (a command's JSON, a provider's answer),
 * which nothing else checks, and each is charged to budgets: a negative figure is taken as 0 (it would give a budget
 * back), one beyond {@link #MAX_TOKENS} or {@link #MAX_COST_USD} as that much (sums stay far from overflowing), so no
 * report can lower a pool's spend or wrap it around.
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
    /** The most tokens one figure of one run is taken for: 10^12 (four of them sum far below {@code Long.MAX_VALUE}). */
    public static final long MAX_TOKENS = 1_000_000_000_000L;
    /** The most USD one run is taken to cost: 10^9, the largest dollar limit the API accepts. */
    public static final BigDecimal MAX_COST_USD = BigDecimal.valueOf(1_000_000_000L);

    public Usage {
        inputTokens = clamp(inputTokens);
        outputTokens = clamp(outputTokens);
        cacheReadTokens = clamp(cacheReadTokens);
        cacheWriteTokens = clamp(cacheWriteTokens);
        costUsd = costUsd == null || costUsd.signum() < 0 ? BigDecimal.ZERO : costUsd.min(MAX_COST_USD);
    }

    private static long clamp(long tokens) {
        return Math.max(0, Math.min(tokens, MAX_TOKENS));
    }

    /** Every token the run consumed: what a budget is charged. */
    public long totalTokens() {
        return inputTokens + outputTokens + cacheReadTokens + cacheWriteTokens;
    }

    /** Where a run's usage figures come from, in decreasing order of trust. */
    public enum UsageSource {
        /** The agent's own report (Claude's {@code usage}, OpenAI's {@code usage}). */
        AGENT("agent"),
        /** Counted with jtokkit from the prompt and the output. */
        TOKENIZER("tokenizer"),
        /**
         * Not measured: characters divided by four as a last resort, or an HTTP call that failed after its request
         * was sent, charged at its hold (prompt tokens counted + {@code max_tokens}).
         */
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
