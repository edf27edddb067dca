package dev.kage.client;

import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code kage tasks}: {@code GET /api/v1/tasks}, one page. */
@Command(name = "tasks", mixinStandardHelpOptions = true,
        description = "List this key's tenant's tasks, newest first (one page; the next page's --cursor is printed on standard error).")
final class TasksCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Option(names = {"-s", "--status"}, split = ",", paramLabel = "STATUS",
            description = "only these: queued, running, completed, partial, failed, cancelled (comma-separated or repeated)")
    List<String> statuses;

    @Option(names = {"-a", "--agent"}, paramLabel = "AGENT", description = "only tasks that assign this agent")
    String agent;

    @Option(names = "--since", paramLabel = "INSTANT", description = "only tasks created at or after this ISO-8601 instant")
    String since;

    @Option(names = {"-n", "--limit"}, paramLabel = "N", description = "tasks per page, 1-100 (the API's default: 20)")
    Integer limit;

    @Option(names = "--cursor", paramLabel = "CURSOR", description = "the next page, as printed by the previous one")
    String cursor;

    @Option(names = "--json", description = "print the API's JSON as it came")
    boolean json;

    @Override
    public Integer call() {
        String path = ApiClient.withQuery("/api/v1/tasks", ApiClient.params(
                "status", statuses == null ? null : String.join(",", statuses), "agent", agent, "since", since,
                "limit", limit == null ? null : limit.toString(), "cursor", cursor));
        ApiClient.Response response = kage.api().get(path);
        kage.out().print(json ? response.text() + "\n" : Format.tasks(response.body()));
        kage.out().flush();
        if (!json && response.body().path("next_cursor").isTextual()) {
            kage.err().println("more: kage tasks --cursor " + response.body().path("next_cursor").asText());
            kage.err().flush();
        }
        return ExitCodes.OK;
    }
}
