package dev.kage.coordinator.events;

import dev.kage.task.TaskStatus;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One entry of the lifecycle stream {@code kage:events}, as {@code EventLog} wrote it. Immutable.
 *
 * @param id     the stream entry id, {@code <ms>-<seq>}
 * @param fields the entry's fields in stream order: {@code type}, {@code at}, {@code task_id}, {@code tenant}, ...
 */
public record StreamEvent(String id, Map<String, String> fields) {
    /** The event type that ends a task whatever its {@code task_status} says. */
    public static final String TASK_CANCELLED = "task.cancelled";

    public StreamEvent {
        fields = Collections.unmodifiableMap(new LinkedHashMap<>(fields));
    }

    public String type() {
        return fields.getOrDefault("type", "message");
    }

    public String taskId() {
        return fields.get("task_id");
    }

    public String tenant() {
        return fields.get("tenant");
    }

    /** True for the last event of a task: its {@code task_status} is final, or the task was cancelled. */
    public boolean endsTask() {
        return TASK_CANCELLED.equals(fields.get("type"))
                || TaskStatus.fromWireName(fields.get("task_status")).map(TaskStatus::isFinal).orElse(false);
    }
}
