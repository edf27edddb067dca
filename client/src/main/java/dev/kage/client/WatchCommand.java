package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code kage watch}: the tenant's tasks as they appear and change. It lists the tasks queued or running, then follows
 * the tenant's event stream ({@code GET /api/v1/events}) and reads a task again each time one of its events arrives; a
 * stream that breaks (or goes silent) is resumed with {@code Last-Event-ID}, after the last event whose task was read and
 * shown; see {@link Reconnects} for the waits and when the coordinator counts as unreachable. Not thread-safe.
 */
@Command(name = "watch", mixinStandardHelpOptions = true,
        description = {"Follow this key's tenant's tasks live: a line when a task appears or its status changes, until Ctrl-C.",
                "Lists the queued and running tasks, then follows GET /api/v1/events."})
final class WatchCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Option(names = {"-a", "--agent"}, paramLabel = "AGENT", description = "only tasks that assign this agent")
    String agent;

    private String lastEventId;

    @Override
    public Integer call() throws InterruptedException {
        ApiClient api = kage.api();
        TaskWatch watch = new TaskWatch(kage.zone());
        List<JsonNode> active = new ArrayList<>();
        Set<String> cursors = new HashSet<>();
        String cursor = null;
        do {
            JsonNode page = api.get(ApiClient.withQuery("/api/v1/tasks",
                    ApiClient.params("status", "queued,running", "agent", agent, "limit", "100", "cursor", cursor))).body();
            page.path("tasks").forEach(active::add);
            cursor = page.path("next_cursor").isTextual() && !page.path("next_cursor").asText().isEmpty()
                    ? page.path("next_cursor").asText() : null;
        } while (cursor != null && cursors.add(cursor)); // a cursor seen before would loop
        print(watch.update(active, Instant.now()));
        Reconnects reconnects = kage.reconnects();
        boolean[] announced = {false};
        while (true) {
            try {
                api.events("/api/v1/events", lastEventId, () -> {
                    reconnects.opened();
                    if (!announced[0]) {
                        announced[0] = true;
                        kage.err().println("kage: watching the tasks of this key's tenant (Ctrl-C to stop)");
                        kage.err().flush();
                    }
                }, event -> {
                    String taskId = taskId(event);
                    if (taskId != null) {
                        // a failing read breaks off the stream before lastEventId moves: the event comes again
                        JsonNode task = api.get("/api/v1/tasks/" + ApiClient.segment(taskId)).body();
                        if (agent == null || assigns(task, agent)) {
                            print(watch.update(List.of(task), Instant.now()));
                        }
                    }
                    lastEventId = TaskFollower.resumable(event.id()) ? event.id() : lastEventId;
                });
                reconnects.ended(); // the stream ended (a proxy, a restarted coordinator): resume
            } catch (ClientException e) {
                reconnects.failed(e);
            }
        }
    }

    private void print(List<String> lines) {
        lines.forEach(kage.out()::println);
        kage.out().flush();
    }

    private static String taskId(SseEvent event) {
        try {
            JsonNode data = ApiClient.JSON.readTree(event.data());
            String id = data.path("task_id").asText("");
            return id.isEmpty() ? null : id;
        } catch (java.io.IOException | RuntimeException notJson) {
            return null;
        }
    }

    private static boolean assigns(JsonNode task, String agent) {
        for (JsonNode assigned : task.path("agents")) {
            if (agent.equals(assigned.isTextual() ? assigned.asText() : assigned.path("cli_name").asText())) {
                return true;
            }
        }
        return false;
    }
}
