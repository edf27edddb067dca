package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * What {@code kage watch} has seen of the tenant's tasks, and the lines that tell what changed since: a task that
 * appears, a task whose status changed. The first update shows the tasks that have not ended and only remembers the
 * others. Not thread-safe.
 */
final class TaskWatch {
    private static final DateTimeFormatter CLOCK = DateTimeFormatter.ofPattern("HH:mm:ss", Locale.ROOT);

    private final Map<String, String> statuses = new HashMap<>();
    private final ZoneId zone;
    private boolean first = true;

    TaskWatch(ZoneId zone) {
        this.zone = zone;
    }

    /**
     * @param tasks entries of {@code GET /api/v1/tasks} (or task views): {@code task_id}, {@code status}, ...
     * @param now   when they were read
     * @return one line per new task or changed status, in the order given
     */
    List<String> update(Iterable<JsonNode> tasks, Instant now) {
        List<String> lines = new ArrayList<>();
        String time = CLOCK.format(now.atZone(zone));
        for (JsonNode task : tasks) {
            String id = task.path("task_id").asText();
            String status = task.path("status").asText();
            if (id.isEmpty() || status.isEmpty()) {
                continue;
            }
            String before = statuses.put(id, status);
            if (before == null) {
                if (!first || !Format.FINAL.contains(status)) {
                    lines.add(time + "  " + id + "  " + status + "  " + agents(task) + "  "
                            + Format.shorten(task.path("description").asText(""), 60));
                }
            } else if (!before.equals(status)) {
                lines.add(time + "  " + id + "  " + before + " -> " + status);
            }
        }
        first = false;
        return lines;
    }

    /** The tasks last seen neither ended nor cancelled. */
    Set<String> unfinished() {
        Set<String> ids = new HashSet<>();
        statuses.forEach((id, status) -> {
            if (!Format.FINAL.contains(status)) {
                ids.add(id);
            }
        });
        return ids;
    }

    private static String agents(JsonNode task) {
        List<String> names = new ArrayList<>();
        for (JsonNode agent : task.path("agents")) {
            names.add(agent.isTextual() ? agent.asText() : agent.path("cli_name").asText());
        }
        return names.isEmpty() ? "-" : String.join(",", names);
    }
}
