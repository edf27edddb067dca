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
        if (response.body().path("next_cursor").isTextual()) {
            // With --json too: standard output stays the page's JSON, the hint goes beside it.
            kage.err().println("more: " + nextPage(response.body().path("next_cursor").asText()));
            kage.err().flush();
        }
        return ExitCodes.OK;
    }

    /** The command line of the next page: this one's filters and the cursor, each value quoted for a POSIX shell when needed. */
    String nextPage(String nextCursor) {
        StringBuilder line = new StringBuilder("kage");
        // The coordinator and config file this page came from (the key is never printed: it comes as it came).
        if (kage.url != null) {
            line.append(" --url ").append(shellQuote(kage.url));
        }
        if (kage.config != null) {
            line.append(" --config ").append(shellQuote(kage.config.toString()));
        }
        line.append(" tasks");
        if (statuses != null && !statuses.isEmpty()) {
            line.append(" --status ").append(shellQuote(String.join(",", statuses)));
        }
        if (agent != null) {
            line.append(" --agent ").append(shellQuote(agent));
        }
        if (since != null) {
            line.append(" --since ").append(shellQuote(since));
        }
        if (limit != null) {
            line.append(" --limit ").append(limit);
        }
        if (json) {
            line.append(" --json");
        }
        return line.append(" --cursor ").append(shellQuote(nextCursor)).toString();
    }

    /** The value as one word of a POSIX shell: as it is when it holds only safe characters, else in single quotes. */
    static String shellQuote(String value) {
        if (!value.isEmpty() && value.matches("[A-Za-z0-9_@%+=:,./-]+")) {
            return value;
        }
        return "'" + value.replace("'", "'\\''") + "'";
    }
}
