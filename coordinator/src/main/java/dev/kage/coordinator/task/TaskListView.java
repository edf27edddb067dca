package dev.kage.coordinator.task;

import com.fasterxml.jackson.annotation.JsonInclude;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.time.Instant;
import java.util.List;

/**
 * {@code GET /api/v1/tasks}: one page of the caller's tasks, newest first.
 *
 * @param nextCursor pass as {@code cursor} for the next page; {@code null} on the last page
 */
@Serdeable(naming = SnakeCaseStrategy.class)
@JsonInclude(JsonInclude.Include.ALWAYS)
public record TaskListView(List<Summary> tasks, String nextCursor) {

    /**
     * @param description the first 200 characters
     * @param agents      the assigned agents, in the order submitted
     * @param completedAt when the task reached a final status, or {@code null}
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record Summary(String taskId, String status, String description, String priority, List<String> agents,
                          Instant createdAt, Instant updatedAt, Instant completedAt) {
    }
}
