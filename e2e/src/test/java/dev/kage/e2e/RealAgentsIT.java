package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.testing.ScriptedModelServer;
import dev.kage.testing.ScriptedModelServer.Reply;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The fleet with the real {@code claude} and {@code codex} CLIs from npm (REAL-AGENTS.md), driven by the scripted
 * model on loopback: the model asks for a file to be written (Claude's Write tool, codex's exec_command), the real
 * CLI does it in the job's worktree, the worker commits it on the task's branch and reads the usage the CLI reports;
 * a 429 from the model reaches the fleet as a rate-limit signal. {@code ops/test.sh} installs the CLIs into a cache outside the source tree and passes it as
 * {@code KAGE_TEST_AGENTS_DIR}; without it (npm missing, or Maven run by hand) the tier is skipped, saying so.
 */
class RealAgentsIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final String SECRET = "sk-scripted-secret-8f3a91";
    private static final Pattern WORKDIR = Pattern.compile("Primary working directory: ([^\\s\"\\\\]+)");

    @TempDir
    Path dir;
    private Path origin;
    private Path claude;
    private Path codex;

    @BeforeEach
    void setUp() throws Exception {
        String agents = System.getenv("KAGE_TEST_AGENTS_DIR");
        Path cache = agents != null ? Path.of(agents) : Path.of(System.getProperty("user.home"), ".cache", "kage", "agents");
        claude = cache.resolve("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
        codex = cache.resolve("node_modules/@openai/codex/bin/codex.js");
        Assumptions.assumeTrue(Files.isExecutable(claude), "the real claude CLI is not installed at " + claude
                + ": ops/test.sh installs it from npm (KAGE_AGENTS_CACHE); skipping the real-agents tier");
        origin = FleetIT.createRepo(dir.resolve("origin"));
    }

    @Test
    void theRealClaudeCliEditsItsWorktreeAndItsReportedUsageIsRecorded() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            // Turn 1: ask for a file in the working directory the CLI names; turn 2 (the tool's result came back): done.
            server.answering((n, body) -> {
                if (body.contains("\"tool_result\"")) {
                    return Reply.ok("Wrote GREETING.md.", 300, 12);
                }
                Matcher cwd = WORKDIR.matcher(body);
                if (!cwd.find()) {
                    return Reply.ok("(no working directory in the request)", 1, 1);
                }
                String input = JSON.createObjectNode().put("file_path", cwd.group(1) + "/GREETING.md")
                        .put("content", "hello from the scripted model\n").toString();
                return Reply.toolUse("Write", input, 200, 30);
            });
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "real-claude"))) {
                fleet.startCoordinator(Map.of("KAGE_AGENTS_FILE", agents().toString()));
                fleet.awaitHealthy();
                fleet.startWorker("real-w1", dir.resolve("work"), origin, claudeEnv(server));

                String id = submit(fleet, "Write a greeting file");
                JsonNode task = awaitFinal(fleet, id);
                assertThat(task.get("status").asText()).as(task.toString()).isEqualTo("completed");
                JsonNode agent = task.get("agents").get(0);
                assertThat(agent.get("usage_source").asText()).isEqualTo("agent");
                assertThat(agent.get("tokens_in").asLong()).as("both turns' input, as the CLI reports it").isEqualTo(500);
                assertThat(agent.get("tokens_out").asLong()).isEqualTo(42);
                assertThat(agent.get("cost_usd").decimalValue()).as("the CLI's own total_cost_usd").isPositive();
                assertThat(agent.get("output_summary").asText()).isEqualTo("Wrote GREETING.md.");
                assertThat(agent.get("diff_stat").asText()).isEqualTo("1 file changed, 1 insertion(+)");
                String branch = agent.get("branch").asText();
                assertThat(FleetIT.git(origin, "show", branch + ":GREETING.md")).isEqualTo("hello from the scripted model");
                assertThat(task.get("budget").get("tokens_used").asLong()).isEqualTo(542);
                assertThat(server.requests()).as("the CLI spoke to the scripted model only").isNotEmpty()
                        .allSatisfy(r -> assertThat(r.path()).endsWith("/v1/messages"));
                assertThat(fleet.log("real-w1")).doesNotContain(SECRET);
                assertThat(fleet.count("SELECT count(*) FROM execution_results WHERE output_summary LIKE ?", "%" + SECRET + "%"))
                        .isZero();
            }
        }
    }

    @Test
    void theRealCodexCliRunsACommandInItsWorktreeAndItsReportedUsageIsRecorded() throws Exception {
        Assumptions.assumeTrue(Files.isRegularFile(codex), "the real codex CLI is not installed at " + codex);
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            // Turn 1: a shell command that writes a file (codex's exec_command tool); once its output comes back: done.
            server.answering((n, body) -> body.contains("\"function_call_output\"")
                    ? Reply.ok("Wrote CODEX.md.", 150, 8)
                    : Reply.toolUse("exec_command", JSON.createObjectNode().put("cmd", "printf 'written by codex\\n' > CODEX.md")
                            .toString(), 120, 9));
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "real-codex"))) {
                fleet.startCoordinator(Map.of("KAGE_AGENTS_FILE", agents().toString()));
                fleet.awaitHealthy();
                fleet.startWorker("real-codex", dir.resolve("work"), origin, codexEnv(server));

                String id = submit(fleet, "Write a file with codex", "codex");
                JsonNode task = awaitFinal(fleet, id);
                assertThat(task.get("status").asText()).as(task.toString()).isEqualTo("completed");
                JsonNode agent = task.get("agents").get(0);
                assertThat(agent.get("usage_source").asText()).isEqualTo("agent");
                assertThat(agent.get("tokens_in").asLong()).as("both requests of the turn").isEqualTo(270);
                assertThat(agent.get("tokens_out").asLong()).isEqualTo(17);
                assertThat(agent.get("output_summary").asText()).isEqualTo("Wrote CODEX.md.");
                assertThat(agent.get("diff_stat").asText()).isEqualTo("1 file changed, 1 insertion(+)");
                assertThat(FleetIT.git(origin, "show", agent.get("branch").asText() + ":CODEX.md")).isEqualTo("written by codex");
                assertThat(server.requests()).hasSize(2).allSatisfy(r -> assertThat(r.path()).isEqualTo("/v1/responses"));
            }
        }
    }

    @Test
    void aRateLimitedAnswerToTheRealClaudeCliPausesTheFleetAndTheJobRunsAgain() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.tooManyRequests(2)).answering((n, body) -> Reply.ok("fine after the pause", 50, 5));
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "real-claude-429"))) {
                fleet.startCoordinator(Map.of("KAGE_AGENTS_FILE", agents().toString()));
                fleet.awaitHealthy();
                fleet.startWorker("real-429", dir.resolve("work"), origin, claudeEnv(server));

                String id = submit(fleet, "Say something");
                JsonNode task = awaitFinal(fleet, id);
                assertThat(task.get("status").asText()).as(task.toString()).isEqualTo("completed");
                assertThat(fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'RateLimitError' AND retryable")).isEqualTo(1);
                assertThat(fleet.log("real-429")).contains("answered 429");
                assertThat(server.requests().getFirst().answeredStatus()).isEqualTo(429);
                long first = server.requests().getFirst().arrivedMicros();
                assertThat(server.requests().get(1).arrivedMicros() - first).as("the fleet waited out the pause")
                        .isGreaterThanOrEqualTo(1_000_000);
            }
        }
    }

    @Test
    void aRateLimitedAnswerToTheRealCodexCliPausesTheFleetAndTheJobRunsAgain() throws Exception {
        Assumptions.assumeTrue(Files.isRegularFile(codex), "the real codex CLI is not installed at " + codex);
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.then(Reply.tooManyRequests(2)).answering((n, body) -> Reply.ok("fine after the pause", 60, 6));
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "real-codex-429"))) {
                fleet.startCoordinator(Map.of("KAGE_AGENTS_FILE", agents().toString()));
                fleet.awaitHealthy();
                fleet.startWorker("real-codex-429", dir.resolve("work"), origin, codexEnv(server));

                String id = submit(fleet, "Say something", "codex");
                JsonNode task = awaitFinal(fleet, id);
                assertThat(task.get("status").asText()).as(task.toString()).isEqualTo("completed");
                assertThat(task.get("agents").get(0).get("output_summary").asText()).isEqualTo("fine after the pause");
                // codex prints {"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many Requests"}}
                assertThat(fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'RateLimitError' AND retryable"
                        + " AND error_details::text LIKE '%429 Too Many Requests%'")).isEqualTo(1);
                assertThat(server.requests().getFirst().answeredStatus()).isEqualTo(429);
                long first = server.requests().getFirst().arrivedMicros();
                assertThat(server.requests().get(1).arrivedMicros() - first).as("the fleet waited out the pause")
                        .isGreaterThanOrEqualTo(1_000_000);
            }
        }
    }

    /** A worker serving the real codex CLI, configured (CODEX_HOME) to talk to the scripted model without retrying. */
    private Map<String, String> codexEnv(ScriptedModelServer server) throws Exception {
        Path codexHome = Files.createDirectories(dir.resolve("codex-home"));
        Files.writeString(codexHome.resolve("config.toml"), """
                model = "gpt-5"
                model_provider = "scripted"

                [model_providers.scripted]
                name = "scripted"
                base_url = "%s"
                env_key = "SCRIPTED_MODEL_KEY"
                wire_api = "responses"
                request_max_retries = 0
                stream_max_retries = 0
                """.formatted(server.openAiBaseUrl()));
        Map<String, String> env = claudeEnv(server);
        env.put("CODEX_HOME", codexHome.toString());
        env.put("SCRIPTED_MODEL_KEY", SECRET);
        env.put("KAGE_WORKER_AGENTS", "codex");
        return env;
    }

    /** The worker's settings: the agents file, and what the CLI needs to talk to the scripted model. */
    private Map<String, String> claudeEnv(ScriptedModelServer server) throws Exception {
        Path home = Files.createDirectories(dir.resolve("home"));
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents().toString());
        env.put("ANTHROPIC_BASE_URL", server.anthropicBaseUrl());
        env.put("ANTHROPIC_API_KEY", SECRET);
        env.put("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        env.put("CLAUDE_CODE_MAX_RETRIES", "0");
        env.put("HOME", home.toString()); // the CLI keeps its state under HOME: a fresh one per test
        env.put("RATE_LIMIT_BACKOFF_BASE", "1");
        return env;
    }

    private Path agents() throws Exception {
        Path agents = dir.resolve("agents.yml");
        Files.writeString(agents, """
                agents:
                  claude-code:
                    type: command
                    argv: ["%s", "-p", "{prompt}", "--output-format", "json", "--permission-mode", "acceptEdits",
                           "--model", "claude-sonnet-4-5"]
                    output: claude-json
                    env: [ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, CLAUDE_CODE_MAX_RETRIES]
                    model: claude-sonnet-4-5
                    limits: {requests: 50, window_seconds: 1}
                  codex:
                    type: command
                    argv: ["node", "%s", "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write", "{prompt}"]
                    output: codex-json
                    env: [CODEX_HOME, SCRIPTED_MODEL_KEY]
                    model: gpt-5
                    limits: {requests: 50, window_seconds: 1}
                """.formatted(claude, codex));
        return agents;
    }

    private static String submit(Fleet fleet, String description) throws Exception {
        return submit(fleet, description, "claude-code");
    }

    private static String submit(Fleet fleet, String description, String agent) throws Exception {
        String body = JSON.createObjectNode().put("description", description)
                .set("cli_assignments", JSON.readTree("[{\"cli_name\": \"" + agent + "\", \"timeout\": 120}]")).toString();
        var accepted = fleet.post("/api/v1/tasks", KEY, body);
        assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
        return JSON.readTree(accepted.body()).get("task_id").asText();
    }

    private static JsonNode awaitFinal(Fleet fleet, String id) {
        JsonNode[] last = new JsonNode[1];
        await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500)).until(() -> {
            last[0] = JSON.readTree(fleet.get("/api/v1/tasks/" + id, KEY).body());
            String status = last[0].get("status").asText();
            return status.equals("completed") || status.equals("failed") || status.equals("partial");
        });
        return last[0];
    }
}
