package dev.kage.task;

import java.math.BigDecimal;
import java.time.Instant;
import java.util.UUID;

/**
 * One finished job as stored in {@code execution_results}. Immutable.
 *
 * @param tokensIn         input tokens (prompt, excluding cache reads)
 * @param tokensOut        output tokens
 * @param cacheReadTokens  tokens read from the provider's prompt cache
 * @param cacheWriteTokens tokens written to the provider's prompt cache
 * @param cost             USD
 * @param usageSource      where the figures come from: {@code agent} report, {@code tokenizer} count or {@code estimate}
 * @param durationMs       wall time of the agent process, milliseconds
 * @param exitCode         the process's exit code, or {@code null} when it was killed
 * @param diffStat         {@code git diff --shortstat} of the agent's branch against its base
 * @param createdAt        set by the database; {@code null} before insertion
 * @param patch            {@code git diff} of the agent's branch against its base, capped (64 KiB); null when nothing changed
 */
public record ResultRecord(
        UUID taskId,
        String jobId,
        String cliName,
        JobStatus status,
        String outputSummary,
        long tokensIn,
        long tokensOut,
        long cacheReadTokens,
        long cacheWriteTokens,
        BigDecimal cost,
        String usageSource,
        String model,
        long durationMs,
        Integer exitCode,
        String branch,
        String commitSha,
        String diffStat,
        String workerId,
        int attempt,
        Instant createdAt,
        String patch) {

    /** Text fields without NUL characters, which Postgres refuses ({@link dev.kage.store.PostgresText}). */
    public ResultRecord {
        outputSummary = dev.kage.store.PostgresText.withoutNul(outputSummary);
        model = dev.kage.store.PostgresText.withoutNul(model);
        diffStat = dev.kage.store.PostgresText.withoutNul(diffStat);
        patch = dev.kage.store.PostgresText.withoutNul(patch);
    }

    /** A result without a patch (the agent changed nothing, or made no worktree). */
    public ResultRecord(UUID taskId, String jobId, String cliName, JobStatus status, String outputSummary, long tokensIn,
                        long tokensOut, long cacheReadTokens, long cacheWriteTokens, BigDecimal cost, String usageSource,
                        String model, long durationMs, Integer exitCode, String branch, String commitSha, String diffStat,
                        String workerId, int attempt, Instant createdAt) {
        this(taskId, jobId, cliName, status, outputSummary, tokensIn, tokensOut, cacheReadTokens, cacheWriteTokens, cost,
                usageSource, model, durationMs, exitCode, branch, commitSha, diffStat, workerId, attempt, createdAt, null);
    }

    public long totalTokens() {
        return tokensIn + tokensOut + cacheReadTokens + cacheWriteTokens;
    }
}
