package dev.kage.task;

import java.time.Instant;
import java.util.List;
import java.util.UUID;

/**
 * A task as stored in {@code tasks}. Immutable.
 *
 * @param metadataJson the caller's {@code metadata} object as JSON, or {@code null}
 * @param tokenLimit   the task's token pool, tokens
 * @param completedAt  when the task reached a final state, or {@code null}
 */
public record TaskRecord(
        UUID id,
        String tenant,
        String description,
        TaskStatus status,
        Priority priority,
        String repo,
        String baseBranch,
        List<Assignment> assignments,
        String metadataJson,
        long tokenLimit,
        Instant createdAt,
        Instant updatedAt,
        Instant completedAt) {

    public TaskRecord {
        assignments = List.copyOf(assignments);
    }
}
