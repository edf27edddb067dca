package dev.kage.client;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code kage queues}: {@code GET /api/v1/queues}. */
@Command(name = "queues", mixinStandardHelpOptions = true,
        description = "Show the job queues per agent and priority: waiting, pending (running), delayed, the oldest entry's age, "
                + "and the dead letters.")
final class QueuesCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Option(names = "--json", description = "print the API's JSON as it came")
    boolean json;

    @Override
    public Integer call() {
        ApiClient.Response response = kage.api().get("/api/v1/queues");
        kage.out().print(json ? response.text() + "\n" : Format.queues(response.body()));
        kage.out().flush();
        return ExitCodes.OK;
    }
}
