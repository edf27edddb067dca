package dev.kage.client;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;

/** {@code kage submit}: {@code POST /api/v1/tasks}, optionally following the task until it ends. */
@Command(name = "submit", mixinStandardHelpOptions = true,
        description = {"Submit a task: one job per --agent. Prints the task id alone on standard output "
                + "(ID=$(kage submit ...)); with --wait, follows its progress per agent until it ends."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:submitted (with --wait: the task completed)", "1:with --wait: the task ended partial, failed or cancelled",
                "2:bad command line or configuration", "3:the API refused the task", "4:the coordinator failed or could not be reached"})
final class SubmitCommand implements Callable<Integer> {
    enum Priority { high, normal, low }

    @ParentCommand
    Kage kage;

    @Parameters(index = "0", paramLabel = "DESCRIPTION", description = {"what the agents should do; '-' reads it from standard input;",
            "one starting with '-' goes last, after the options and '--': kage submit -a A -- \"$DESC\""})
    String description;

    @Option(names = {"-a", "--agent"}, required = true, paramLabel = "AGENT",
            description = "a configured agent to run it; repeat for several (each runs in its own worktree)")
    List<String> agents;

    @Option(names = {"-p", "--priority"}, paramLabel = "PRIORITY", description = "high, normal (the API's default) or low")
    Priority priority;

    @Option(names = "--repo", paramLabel = "REPO", description = "git repository (path or URL); default: the worker's")
    String repo;

    @Option(names = "--base-branch", paramLabel = "BRANCH", description = "branch the worktrees start from")
    String baseBranch;

    @Option(names = {"-t", "--timeout"}, paramLabel = "SECONDS", description = "each agent's timeout in seconds (default: the coordinator's)")
    Integer timeout;

    @Option(names = "--max-tokens", paramLabel = "TOKENS", description = "the task's token pool, shared by its agents")
    Long maxTokens;

    @Option(names = "--idempotency-key", paramLabel = "KEY",
            description = "makes the submit safe to repeat: the same key and task return the first task")
    String idempotencyKey;

    @Option(names = {"-w", "--wait"}, description = "follow the task and print per-agent progress until it ends")
    boolean await;

    /** How often a submit is sent at most when its answer is lost (with the same Idempotency-Key each time). */
    static final int SUBMIT_ATTEMPTS = 3;

    @Override
    public Integer call() throws IOException, InterruptedException {
        if (idempotencyKey != null) {
            ClientConfig.checkToken(idempotencyKey, "--idempotency-key");
            if (idempotencyKey.isEmpty() || idempotencyKey.length() > 200) {
                throw ClientException.usage("--idempotency-key: 1 to 200 characters (this one has " + idempotencyKey.length() + ")");
            }
        }
        ApiClient api = kage.api();
        ObjectNode body = ApiClient.JSON.createObjectNode();
        body.put("description", "-".equals(description) ? standardInput(System.in.readAllBytes()) : description);
        ArrayNode assignments = body.putArray("cli_assignments");
        for (String agent : agents) {
            ObjectNode assignment = assignments.addObject().put("cli_name", agent);
            if (timeout != null) {
                assignment.put("timeout", timeout);
            }
        }
        if (priority != null) {
            body.put("priority", priority.name());
        }
        if (repo != null) {
            body.put("repo", repo);
        }
        if (baseBranch != null) {
            body.put("base_branch", baseBranch);
        }
        if (maxTokens != null) {
            body.putObject("budget").put("max_tokens", maxTokens);
        }
        Map<String, String> headers = new LinkedHashMap<>();
        // Without a key of the caller's, one of its own: a submit whose answer was lost (a timeout, a dropped
        // connection, a 5xx) is sent again with it, and the coordinator returns the task the first one created instead
        // of making a second.
        boolean ownKey = idempotencyKey == null;
        String key = ownKey ? "kage-cli-" + java.util.UUID.randomUUID() : idempotencyKey;
        headers.put("Idempotency-Key", key);
        ApiClient.Response response = null;
        Reconnects retries = kage.reconnects();
        for (int attempt = 1; response == null; attempt++) {
            try {
                response = api.post("/api/v1/tasks", body, headers);
            } catch (ClientException e) {
                if (!e.retryable() || attempt == SUBMIT_ATTEMPTS) {
                    throw e.retryable() ? new ClientException(e.exitCode(), e.getMessage() + " (the task may have been created: "
                            + "the same command with --idempotency-key " + key + " returns it if so, and never makes a second)")
                            : e;
                }
                retries.failed(e); // waits 1 s, or the answer's Retry-After
            }
        }
        String id = response.body().path("task_id").asText("");
        if (!response.body().path("task_id").isTextual() || id.isBlank()) {
            throw ClientException.notTheApi("the answer to the submit (HTTP " + response.status() + ") has no task_id: "
                    + Format.shorten(response.text(), 200));
        }
        response.headers().firstValue("X-Kage-Unserved-Agents").ifPresent(unserved -> kage.err().println(
                "kage: no live worker serves " + unserved + " yet; the task waits for one"));
        if (response.headers().firstValue("Idempotent-Replayed").filter("true"::equalsIgnoreCase).isPresent()) {
            kage.err().println(ownKey ? "kage: the first attempt's answer was lost; this is the task it created"
                    : "kage: the same Idempotency-Key was used before: this is the task it created");
        }
        kage.err().flush();
        kage.out().println(id);
        kage.out().flush();
        if (!await) {
            return ExitCodes.OK;
        }
        return new TaskFollower(api, kage.out(), kage.zone(), kage.reconnects()).follow(id);
    }

    /**
     * The description read from standard input, which must be UTF-8: a byte that is not would otherwise be sent as
     * U+FFFD, a changed instruction the server could no longer refuse.
     */
    static String standardInput(byte[] bytes) {
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(bytes)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            throw ClientException.usage("the description on standard input is not UTF-8 text");
        }
    }
}
