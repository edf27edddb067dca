package dev.kage.coordinator.task;

import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.util.List;

/**
 * The 202 answer to a submit.
 *
 * @param statusUrl     where to poll the task
 * @param ignoredFields top-level request fields this version does not know (they had no effect)
 */
@Serdeable(naming = SnakeCaseStrategy.class)
public record SubmitResponse(String taskId, String status, String statusUrl, List<String> agents, List<String> ignoredFields) {
}
