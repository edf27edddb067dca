package dev.kage.coordinator.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintStream;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The small HTTP client the quickstart uses, so a machine with only a JDK needs neither curl nor jq.
 *
 * <pre>
 * java -cp kage-coordinator.jar dev.kage.coordinator.cli.QuickstartClient health --url http://localhost:8003 [--wait 60]
 * java -cp ... QuickstartClient submit --url U --key K --description D --agent a [--agent b] [--repo R] [--timeout S]
 * java -cp ... QuickstartClient wait   --url U --key K [--wait 180] TASK_ID
 * </pre>
 *
 * Exit codes: 0 success (for {@code wait}: every agent completed), 1 failure, 2 usage error.
 */
public final class QuickstartClient {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Set<String> FINAL = Set.of("completed", "partial", "failed", "cancelled");

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final PrintStream out;

    QuickstartClient(PrintStream out) {
        this.out = out;
    }

    public static void main(String[] args) throws Exception {
        System.exit(new QuickstartClient(System.out).run(args));
    }

    int run(String[] args) throws IOException, InterruptedException {
        if (args.length == 0) {
            return usage("missing command");
        }
        String url = "http://localhost:8003";
        String key = "dev-key-12345";
        String description = null;
        String repo = null;
        int timeout = 120;
        int waitSeconds = 180;
        List<String> agents = new ArrayList<>();
        String taskId = null;
        for (int i = 1; i < args.length; i++) {
            String arg = args[i];
            if (arg.startsWith("--") && i + 1 >= args.length) {
                return usage(arg + " needs a value");
            }
            switch (arg) {
                case "--url" -> url = args[++i];
                case "--key" -> key = args[++i];
                case "--description" -> description = args[++i];
                case "--repo" -> repo = args[++i];
                case "--agent" -> agents.add(args[++i]);
                case "--timeout" -> timeout = Integer.parseInt(args[++i]);
                case "--wait" -> waitSeconds = Integer.parseInt(args[++i]);
                default -> {
                    if (arg.startsWith("--")) {
                        return usage("unknown option " + arg);
                    }
                    taskId = arg;
                }
            }
        }
        return switch (args[0]) {
            case "health" -> health(url, waitSeconds);
            case "submit" -> description == null || agents.isEmpty()
                    ? usage("submit needs --description and at least one --agent")
                    : submit(url, key, description, agents, repo, timeout);
            case "wait" -> taskId == null ? usage("wait needs a task id") : await(url, key, taskId, waitSeconds);
            default -> usage("unknown command " + args[0]);
        };
    }

    private int health(String url, int waitSeconds) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(waitSeconds).toNanos();
        do {
            try {
                HttpResponse<String> response = http.send(HttpRequest.newBuilder(URI.create(url + "/health"))
                        .timeout(Duration.ofSeconds(5)).GET().build(), HttpResponse.BodyHandlers.ofString());
                if (response.statusCode() == 200) {
                    return 0;
                }
            } catch (IOException notYet) {
                // the coordinator is still starting
            }
            // Polling a remote process that is starting: there is no event to wait on.
            Thread.sleep(500);
        } while (System.nanoTime() < deadline);
        out.println("coordinator at " + url + " did not report healthy within " + waitSeconds + "s");
        return 1;
    }

    private int submit(String url, String key, String description, List<String> agents, String repo, int timeout)
            throws IOException, InterruptedException {
        ObjectNode body = JSON.createObjectNode();
        body.put("description", description);
        ArrayNode assignments = body.putArray("cli_assignments");
        for (String agent : agents) {
            assignments.addObject().put("cli_name", agent).put("timeout", timeout);
        }
        if (repo != null) {
            body.put("repo", repo);
        }
        HttpResponse<String> response = http.send(HttpRequest.newBuilder(URI.create(url + "/api/v1/tasks"))
                .header("X-API-Key", key)
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
                .build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 202) {
            out.println("submit failed: HTTP " + response.statusCode() + " " + response.body());
            return 1;
        }
        out.println(JSON.readTree(response.body()).path("task_id").asText());
        return 0;
    }

    private int await(String url, String key, String taskId, int waitSeconds) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(waitSeconds).toNanos();
        String lastStatus = "";
        JsonNode task;
        while (true) {
            HttpResponse<String> response;
            try {
                response = http.send(HttpRequest.newBuilder(URI.create(url + "/api/v1/tasks/" + taskId))
                        .header("X-API-Key", key).GET().build(), HttpResponse.BodyHandlers.ofString());
            } catch (ConnectException e) {
                out.println("cannot reach " + url + ": is the coordinator running?");
                return 1;
            }
            if (response.statusCode() != 200) {
                out.println("status request failed: HTTP " + response.statusCode() + " " + response.body());
                return 1;
            }
            task = JSON.readTree(response.body());
            String status = task.path("status").asText();
            if (!status.equals(lastStatus)) {
                out.println("task " + taskId + ": " + status);
                lastStatus = status;
            }
            if (FINAL.contains(status)) {
                break;
            }
            if (System.nanoTime() > deadline) {
                out.println("task " + taskId + " did not finish within " + waitSeconds + "s");
                return 1;
            }
            // Poll interval of a command-line client; the task's events stream is for later clients.
            Thread.sleep(500);
        }
        printAgents(task);
        return "completed".equals(task.path("status").asText()) ? 0 : 1;
    }

    private void printAgents(JsonNode task) {
        out.println();
        for (JsonNode agent : task.path("agents")) {
            out.printf("  %-12s %-9s tokens in/out %d/%d (%s)  cost $%s  %d ms%n", agent.path("cli_name").asText(),
                    agent.path("status").asText(), agent.path("tokens_in").asLong(), agent.path("tokens_out").asLong(),
                    agent.path("usage_source").asText("-"), agent.path("cost_usd").asText(), agent.path("duration_ms").asLong());
            out.printf("  %-12s branch %s%n", "", agent.path("branch").asText("-"));
            out.printf("  %-12s diff   %s%n", "", agent.path("diff_stat").asText("(no changes)"));
            if (!agent.path("error").isNull() && !agent.path("error").isMissingNode()) {
                out.printf("  %-12s error  %s: %s%n", "", agent.path("error").path("error_type").asText(),
                        agent.path("error").path("error_message").asText());
            }
            out.println();
        }
    }

    private int usage(String problem) {
        out.println("QuickstartClient: " + problem);
        out.println("usage: health --url U [--wait S] | submit --url U --key K --description D --agent A [--agent B] "
                + "[--repo R] [--timeout S] | wait --url U --key K [--wait S] TASK_ID");
        return 2;
    }
}
