package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
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
 * {@code kage watch}: the tenant's tasks as they appear and change. The API has an event stream per task only, so
 * this polls {@code GET /api/v1/tasks}: the tasks queued or running, and those created since the watch began (a minute
 * of margin for clocks), then reads one by one those that left the first list without showing up in the second.
 */
@Command(name = "watch", mixinStandardHelpOptions = true,
        description = {"Follow this key's tenant's tasks live: a line when a task appears or its status changes, until Ctrl-C.",
                "Polls GET /api/v1/tasks (no all-tasks event stream exists); at most 100 active and 100 new tasks per poll."})
final class WatchCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = {"-a", "--agent"}, paramLabel = "AGENT", description = "only tasks that assign this agent")
    String agent;

    @Option(names = {"-i", "--interval"}, paramLabel = "SECONDS", defaultValue = "1",
            description = "seconds between polls (default: ${DEFAULT-VALUE})")
    double interval;

    @Override
    public Integer call() throws InterruptedException {
        if (!(interval >= 0.1 && interval <= 3600)) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                    "--interval must be from 0.1 to 3600 seconds, got " + interval);
        }
        ApiClient api = kage.api();
        TaskWatch watch = new TaskWatch(kage.zone());
        String since = Instant.now().minus(Duration.ofMinutes(1)).toString();
        kage.err().println("kage: watching the tasks of this key's tenant (every " + interval + " s; Ctrl-C to stop)");
        kage.err().flush();
        while (true) {
            List<JsonNode> tasks = new ArrayList<>();
            Set<String> listed = new HashSet<>();
            for (String query : List.of(
                    ApiClient.withQuery("/api/v1/tasks", ApiClient.params("status", "queued,running", "agent", agent, "limit", "100")),
                    ApiClient.withQuery("/api/v1/tasks", ApiClient.params("since", since, "agent", agent, "limit", "100")))) {
                for (JsonNode task : api.get(query).body().path("tasks")) {
                    tasks.add(task);
                    listed.add(task.path("task_id").asText());
                }
            }
            for (String id : watch.unaccounted(listed)) {
                tasks.add(api.get("/api/v1/tasks/" + ApiClient.segment(id)).body());
            }
            for (String line : watch.update(tasks, Instant.now())) {
                kage.out().println(line);
            }
            kage.out().flush();
            // Polling a remote API that offers no all-tasks stream: the interval is the point.
            Thread.sleep((long) (interval * 1000));
        }
    }
}
