package dev.kage.tokens;

import java.math.BigDecimal;

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
