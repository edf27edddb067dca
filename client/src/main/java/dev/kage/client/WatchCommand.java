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
 * shown; see {@link Reconnects} for the waits and when the coordinator counts as unreachable. When the stream says events
 * before it may be missing ({@code stream.connected} with {@code complete} false: the first connection, which comes
 * after the listing, or a resume past what the capped stream still holds), the tasks are read again: the open ones
 * listed, and those shown open that are no longer, one by one. Not thread-safe.
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
    /** Set when a stream said events may be missing, until the tasks have been read again (a failed read is retried). */
    private boolean readAgain;

    @Override
    public Integer call() throws InterruptedException {
        ApiClient api = kage.api();
        TaskWatch watch = new TaskWatch(kage.zone());
        print(watch.update(open(api), Instant.now()));
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
                    if (STREAM_CONNECTED.equals(event.name())) {
                        readAgain |= "false".equals(event.field("complete", "true"));
                        if (readAgain) {
                            readAgain(api, watch); // a failing read breaks off the stream: the next connection tries again
                            readAgain = false;
                        }
                    }
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

    /** The first event of the tenant's stream: its id is where the stream starts. */
    static final String STREAM_CONNECTED = "stream.connected";

    /** The tenant's queued and running tasks (of {@link #agent}), every page. */
    private List<JsonNode> open(ApiClient api) {
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
        return active;
    }

    /**
     * Events before the stream's start may be missing: the open tasks listed again, and each task shown open that the
     * listing no longer has read on its own (it ended, or was cancelled, while no event of it reached this watch).
     */
    private void readAgain(ApiClient api, TaskWatch watch) {
        List<JsonNode> tasks = open(api);
        Set<String> listed = new HashSet<>();
        tasks.forEach(task -> listed.add(task.path("task_id").asText()));
        for (String id : watch.unfinished()) {
            if (!listed.contains(id)) {
                tasks.add(api.get("/api/v1/tasks/" + ApiClient.segment(id)).body());
            }
        }
        print(watch.update(tasks, Instant.now()));
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
