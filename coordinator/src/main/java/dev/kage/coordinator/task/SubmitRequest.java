package dev.kage.coordinator.task;

import dev.kage.task.Assignment;
import dev.kage.task.Priority;
import java.util.List;

/**
 * A validated {@code POST /api/v1/tasks} body. Immutable.
 *
 * @param repo          repository path or URL, or {@code null} for the workers' default
 * @param baseBranch    branch to start from, or {@code null} for {@code BASE_BRANCH}
 * @param maxTokens     the task's token pool, or {@code null} for {@code MAX_TOKENS_PER_TASK}
 * @param metadataJson  the caller's {@code metadata} object as JSON, or {@code null}
 * @param ignoredFields top-level fields this version does not know, reported back to the caller
 */
public record SubmitRequest(String description, List<Assignment> assignments, Priority priority, String repo,
                            String baseBranch, Long maxTokens, String metadataJson, List<String> ignoredFields) {
}
