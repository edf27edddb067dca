package dev.kage.client;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;

/** {@code kage status ID}: {@code GET /api/v1/tasks/{id}}. */
@Command(name = "status", mixinStandardHelpOptions = true,
        description = "Show a task: its status, budget, and per agent the status, tokens, cost, branch and diff.")
final class StatusCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Parameters(index = "0", paramLabel = "TASK_ID")
    String taskId;

    @Option(names = "--json", description = "print the API's JSON as it came")
    boolean json;

    @Option(names = {"-w", "--wait"}, description = "follow the task's progress until it ends (exit 1 unless it completed)")
    boolean await;

    @Override
    public Integer call() throws InterruptedException {
        ApiClient api = kage.api();
        if (await) {
            return new TaskFollower(api, kage.out(), kage.zone(), kage.reconnects()).follow(taskId);
        }
        ApiClient.Response response = api.get("/api/v1/tasks/" + ApiClient.segment(taskId));
        kage.out().print(json ? response.text() + "\n" : Format.task(response.body()));
        kage.out().flush();
        return ExitCodes.OK;
    }
}
