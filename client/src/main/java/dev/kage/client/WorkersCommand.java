package dev.kage.client;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code kage workers}: {@code GET /api/v1/workers}. */
@Command(name = "workers", mixinStandardHelpOptions = true,
        description = "Show the live workers: the agents each serves, its slots, the jobs it runs, its last heartbeat.")
final class WorkersCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Option(names = "--json", description = "print the API's JSON as it came")
    boolean json;

    @Override
    public Integer call() {
        ApiClient.Response response = kage.api().get("/api/v1/workers");
        kage.out().print(json ? response.text() + "\n" : Format.workers(response.body()));
        kage.out().flush();
        return ExitCodes.OK;
    }
}
