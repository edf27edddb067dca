package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintWriter;
import java.time.Duration;
import java.time.ZoneId;

/**
 * Follows one task's events ({@code GET /api/v1/tasks/{id}/events}) and prints a progress line per event until the
 * task has ended, then its final line. A stream that breaks is resumed with {@code Last-Event-ID}; after
 * {@link #MAX_RECONNECTS} failures in a row the coordinator counts as unreachable. Not thread-safe.
 */
final class TaskFollower {
    /** Connection failures in a row (or 5xx answers) tolerated while following. */
    static final int MAX_RECONNECTS = 10;
    /** Pause before reconnecting a broken stream. */
    static final Duration RECONNECT_DELAY = Duration.ofSeconds(1);

    private final ApiClient api;
    private final PrintWriter out;
    private final ZoneId zone;
    private String lastEventId;

    TaskFollower(ApiClient api, PrintWriter out, ZoneId zone) {
        this.api = api;
        this.out = out;
        this.zone = zone;
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
        int failures = 0;
        while (true) {
            try {
                api.events(path + "/events", lastEventId, event -> {
                    lastEventId = event.id() == null ? lastEventId : event.id();
                    JsonNode task = "job.finished".equals(event.name()) ? api.get(path).body() : null;
                    out.println(Format.progress(event, task, zone));
                    out.flush();
                });
                JsonNode task = api.get(path).body();
                if (Format.FINAL.contains(task.path("status").asText())) {
                    out.println(Format.finalLine(task));
                    out.flush();
                    return "completed".equals(task.path("status").asText()) ? ExitCodes.OK : ExitCodes.TASK_NOT_COMPLETED;
                }
                failures = 0; // the stream ended early (a proxy, a restarted coordinator): resume
            } catch (ClientException e) {
                if (e.exitCode() != ExitCodes.UNAVAILABLE || ++failures > MAX_RECONNECTS) {
                    throw e;
                }
            }
            // Waiting to reconnect to a remote server: there is nothing to wait on but time.
            Thread.sleep(RECONNECT_DELAY.toMillis());
        }
    }
}
