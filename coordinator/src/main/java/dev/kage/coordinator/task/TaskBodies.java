package dev.kage.coordinator.task;

import io.micronaut.core.annotation.Nullable;
import io.swagger.v3.oas.annotations.media.Schema;
import java.util.List;
import java.util.Map;

/**
 * The task bodies as clients send them, for the OpenAPI document only: {@link SubmitRequestParser} reads the bytes
 * by hand (any content type, every bad field named), so the generator cannot see these shapes. Keep them in step with
 * the parser; {@code SubmitRequestParserTest} covers the rules.
 */
final class TaskBodies {
    private TaskBodies() {
    }

    /**
     * {@code POST /api/v1/tasks}. Unknown top-level fields are ignored and listed back in {@code ignored_fields}.
     *
     * @param description    what the agents should do, 1 to 100,000 characters and at most 120,000 bytes in UTF-8; passed to each agent as one argument
     * @param cliAssignments 1 to 16 agents, each at most once
     * @param priority       {@code high}, {@code normal} (default) or {@code low}
     * @param repo           absolute path or http(s)/ssh/git/file URL of the git repository; default the worker's
     *                       {@code KAGE_DEFAULT_REPO}
     * @param baseBranch     branch the worktree starts from; default {@code BASE_BRANCH}
     * @param budget         the task's token pool, shared by its agents
     * @param metadata       any JSON object up to 16 KiB, stored with the task
     */
    @Schema(name = "SubmitTask")
    record Submit(String description, List<Assignment> cliAssignments,
                  @Nullable @Schema(allowableValues = {"high", "normal", "low"}, defaultValue = "normal") String priority,
                  @Nullable String repo, @Nullable String baseBranch, @Nullable Budget budget,
                  @Nullable Map<String, Object> metadata) {
    }

    /**
     * @param cliName a configured agent, e.g. {@code claude-code}
     * @param timeout seconds, 1 to 86400; default {@code DEFAULT_CLI_TIMEOUT}
     */
    @Schema(name = "CliAssignment")
    record Assignment(String cliName, @Nullable @Schema(minimum = "1", maximum = "86400") Integer timeout) {
    }

    /**
     * @param maxTokens the task's token pool; default {@code MAX_TOKENS_PER_TASK}
     */
    @Schema(name = "TaskBudget")
    record Budget(@Nullable @Schema(minimum = "1") Long maxTokens) {
    }

    /**
     * {@code POST /api/v1/tasks:batch}.
     *
     * @param tasks 1 to 1,000 tasks in the single submit's shape
     */
    @Schema(name = "SubmitBatch")
    record Batch(List<Submit> tasks) {
    }
}
