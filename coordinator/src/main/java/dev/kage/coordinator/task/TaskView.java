package dev.kage.coordinator.task;

import com.fasterxml.jackson.annotation.JsonInclude;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.math.BigDecimal;
import java.time.Instant;
import java.util.List;
import java.util.Map;

/**
 * {@code GET /api/v1/tasks/{id}}: the task and one entry per assigned agent.
 *
 * @param agents one entry per {@code cli_assignments} entry, in the order submitted
 * @param errors every error row of the task, oldest first
 */
@Serdeable(naming = SnakeCaseStrategy.class)
@JsonInclude(JsonInclude.Include.ALWAYS)
public record TaskView(
        String taskId,
        String status,
        String description,
        String priority,
        String repo,
        String baseBranch,
        Instant createdAt,
        Instant updatedAt,
        Instant completedAt,
        Budget budget,
        List<AgentView> agents,
        List<ErrorView> errors) {

    /**
     * @param tokenLimit the task's pool, tokens
     * @param tokensUsed tokens settled by finished jobs
     * @param tokensReserved tokens held by running jobs
     * @param usdUsed     USD settled by finished jobs (their reported cost, else the price table)
     * @param usdReserved USD held by running jobs (estimated from the price table)
     * @param mode        {@code BUDGET_MODE}: {@code log} or {@code enforce}
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record Budget(long tokenLimit, long tokensUsed, long tokensReserved, long tokensRemaining, BigDecimal usdUsed,
                         BigDecimal usdReserved, String mode) {
    }

    /**
     * One agent's part of the task. Figures are zero and result fields null until it finishes.
     *
     * @param costUsd     USD
     * @param durationMs  milliseconds the agent ran
     * @param usageSource {@code agent}, {@code tokenizer} or {@code estimate}
     * @param patch       the agent's changes against the base branch ({@code git diff}, first 64 KiB), or null
     * @param waiting     while the job is queued and no live worker serves its agent, why it waits; else null
     * @param error       the first error of this agent's job, or null
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record AgentView(
            String cliName,
            String status,
            int timeout,
            long tokensIn,
            long tokensOut,
            long cacheReadTokens,
            long cacheWriteTokens,
            long totalTokens,
            BigDecimal costUsd,
            String usageSource,
            long durationMs,
            Integer exitCode,
            String branch,
            String commit,
            String diffStat,
            String patch,
            String outputSummary,
            String worker,
            String waiting,
            ErrorView error) {
    }

    /**
     * @param errorDetails the row's JSON details
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record ErrorView(String cliName, String errorType, String errorMessage, Map<String, Object> errorDetails,
                            Instant occurredAt) {
    }
}
