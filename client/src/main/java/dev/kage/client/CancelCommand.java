package dev.kage.client;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;

/** {@code kage cancel ID}: {@code POST /api/v1/tasks/{id}/cancel}. */
@Command(name = "cancel", mixinStandardHelpOptions = true,
        description = "Cancel a task: its queued jobs never start and its running agents are stopped. "
                + "A task that has already ended is refused (exit 3).")
final class CancelCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Parameters(index = "0", paramLabel = "TASK_ID")
    String taskId;

    @Override
    public Integer call() {
        ApiClient.Response response = kage.api().post("/api/v1/tasks/" + ApiClient.segment(taskId) + "/cancel", null, java.util.Map.of());
        kage.out().println("task " + response.body().path("task_id").asText(taskId) + " cancelled (was "
                + response.body().path("previous_status").asText("?") + ")");
        kage.out().flush();
        return ExitCodes.OK;
    }
}
