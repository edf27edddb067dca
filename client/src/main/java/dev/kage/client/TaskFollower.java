package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintWriter;
import java.time.ZoneId;

/**
 * Follows one task's events ({@code GET /api/v1/tasks/{id}/events}) and prints a progress line per event until the
 * task has ended, then its final line. A stream that breaks (or goes silent) is resumed with {@code Last-Event-ID}, after
 * the last event whose line was printed; see {@link Reconnects} for the waits and when the coordinator counts as
 * unreachable. Not thread-safe.
 */
final class TaskFollower {
    private final ApiClient api;
    private final PrintWriter out;
    private final ZoneId zone;
    private final Reconnects reconnects;
    private String lastEventId;

    TaskFollower(ApiClient api, PrintWriter out, ZoneId zone, Reconnects reconnects) {
        this.api = api;
        this.out = out;
        this.zone = zone;
        this.reconnects = reconnects;
    }

    /**
     * Prints the task's progress until it has ended.
     *
     * @return {@link ExitCodes#OK} when the task completed, {@link ExitCodes#TASK_NOT_COMPLETED} otherwise
     * @throws ClientException.ApiError for a 4xx (unknown task, revoked key)
     * @throws ClientException          (unavailable) when the coordinator stays unreachable
     */
    int follow(String taskId) throws InterruptedException {
        String path = "/api/v1/tasks/" + ApiClient.segment(taskId);
        while (true) {
            try {
                api.events(path + "/events", lastEventId, reconnects::opened, event -> {
                    out.println(Format.progress(event, "job.finished".equals(event.name()) ? figures(path) : null, zone));
                    out.flush();
                    // only now: a stream that breaks before the line was printed is resumed before this event
                    lastEventId = resumable(event.id()) ? event.id() : lastEventId;
                });
                JsonNode task = api.get(path).body();
                if (Format.FINAL.contains(task.path("status").asText())) {
                    out.println(Format.finalLine(task));
                    out.flush();
                    return "completed".equals(task.path("status").asText()) ? ExitCodes.OK : ExitCodes.TASK_NOT_COMPLETED;
                }
                reconnects.ended(); // the stream ended early (a proxy, a restarted coordinator): resume
            } catch (ClientException e) {
                reconnects.failed(e);
            }
        }
    }

    /** The task as read after a {@code job.finished}, for its agent's figures; null when it cannot be read now. */
    private JsonNode figures(String path) {
        try {
            return api.get(path).body();
        } catch (ClientException e) {
            if (!e.retryable()) {
                throw e;
            }
            return null; // the line without the figures; the final line reads the task again
        }
    }

    /** An id that can go back as the {@code Last-Event-ID} header. */
    static boolean resumable(String id) {
        return id != null && !id.isEmpty() && id.chars().allMatch(c -> c >= 0x21 && c <= 0x7E);
    }
}
