package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.config.DatabaseUrl;
import dev.kage.testing.TestServices;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole path as users run it: a coordinator and two workers as separate processes, driven only
 * through HTTP, running the bundled demo agent in real git worktrees.
 */
class FleetIT {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    @Test
    void aTaskWithTwoAgentsCompletesWithBothResultRowsAndBothBranches() throws Exception {
        Path origin = createRepo(dir.resolve("origin"));
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "two-agents"))) {
            fleet.startCoordinator(Map.of());
            fleet.awaitHealthy();
            fleet.startWorker("e2e-w1", dir.resolve("work"), origin, Map.of());
            fleet.startWorker("e2e-w2", dir.resolve("work"), origin, Map.of());

            String description = "Quick test: add a line; $(touch /tmp/kage-e2e-pwned) `id`";
            String body = JSON.createObjectNode().put("description", description)
                    .set("cli_assignments", JSON.readTree("[{\"cli_name\": \"claude-code\", \"timeout\": 60},"
                            + " {\"cli_name\": \"demo\", \"timeout\": 60}]")).toString();
            var accepted = fleet.post("/api/v1/tasks", "dev-key-12345", body);
            assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
            String id = JSON.readTree(accepted.body()).get("task_id").asText();

            JsonNode task = await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500))
                    .until(() -> JSON.readTree(fleet.get("/api/v1/tasks/" + id, "dev-key-12345").body()),
                            t -> List.of("completed", "partial", "failed").contains(t.path("status").asText()));

            assertThat(task.get("status").asText()).as(task.toPrettyString()).isEqualTo("completed");
            long expectedIn = (description.length() + 3) / 4 + 50;
            for (String agent : List.of("claude-code", "demo")) {
                JsonNode view = agentView(task, agent);
                assertThat(view.get("status").asText()).isEqualTo("completed");
                assertThat(view.get("tokens_in").asLong()).isEqualTo(expectedIn);
                assertThat(view.get("tokens_out").asLong()).isEqualTo(120);
                assertThat(view.get("usage_source").asText()).isEqualTo("agent");
                assertThat(view.get("cost_usd").decimalValue()).isPositive();
                assertThat(view.get("branch").asText()).isEqualTo("kage/" + id + "/" + agent);
                assertThat(view.get("diff_stat").asText()).isEqualTo("1 file changed, 1 insertion(+)");
                assertThat(view.get("patch").asText()).contains("+++ b/KAGE_DEMO.md").contains("Quick test: add a line");
                assertThat(view.get("worker").asText()).startsWith("e2e-w");
                String edit = git(origin, "show", "kage/" + id + "/" + agent + ":KAGE_DEMO.md");
                assertThat(edit).contains(agent).contains("Quick test: add a line");
            }
            assertThat(Path.of("/tmp/kage-e2e-pwned")).doesNotExist();
            assertThat(resultRows(fleet.schema, id)).containsExactlyInAnyOrder("claude-code:completed:" + expectedIn + ":120",
                    "demo:completed:" + expectedIn + ":120");
            assertThat(task.get("budget").get("tokens_used").asLong()).isEqualTo(2 * (expectedIn + 120));
        }
    }

    @Test
    void workersStoppedWithSigtermLeaveNoHeartbeatBehind() throws Exception {
        Path origin = createRepo(dir.resolve("origin"));
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "sigterm"))) {
            Process worker = fleet.startWorker("e2e-term", dir.resolve("work"), origin, Map.of());
            String heartbeat = fleet.redis.keys().worker("e2e-term");
            await().atMost(Duration.ofSeconds(60)).until(() -> fleet.redis.redis().exists(heartbeat) == 1);
            assertThat(fleet.redis.redis().hget(heartbeat, "agents")).isEqualTo("claude-code,demo");
            assertThat(fleet.redis.redis().pttl(heartbeat)).isPositive();
            assertThat(fleet.redis.redis().smembers(fleet.redis.keys().workers())).contains("e2e-term");

            // A second worker with the same id on the same host (a copied unit file, a scaled-up process group): it
            // would share the first's consumer name, clones and worktrees. It stops at start-up, naming the variable.
            Process twin = fleet.startWorker("e2e-term-twin", "e2e-term", dir.resolve("work"), origin, Map.of());
            assertThat(twin.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(twin.exitValue()).isEqualTo(2);
            assertThat(fleet.log("e2e-term-twin")).contains("KAGE_WORKER_ID=e2e-term: another worker process on this host "
                    + "runs with this id (pid " + worker.pid());
            assertThat(worker.isAlive()).isTrue();
            assertThat(fleet.redis.redis().hget(heartbeat, "agents")).isEqualTo("claude-code,demo");
            worker.destroy();
            assertThat(worker.waitFor(40, TimeUnit.SECONDS)).isTrue();
            assertThat(fleet.redis.redis().exists(heartbeat)).isZero();
            assertThat(fleet.redis.redis().smembers(fleet.redis.keys().workers())).doesNotContain("e2e-term");
            assertThat(fleet.log("e2e-term")).contains("Worker e2e-term stopped");
        }
    }

    @Test
    void badConfigurationStopsStartUpWithAMessageNamingTheVariable() throws Exception {
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "bad-config"))) {
            Process noKeys = fleet.start("coordinator-no-keys", Fleet.COORDINATOR_JAR, withPort(fleet, Map.of()));
            assertThat(noKeys.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(noKeys.exitValue()).isEqualTo(2);
            assertThat(fleet.log("coordinator-no-keys")).contains("KAGE_API_KEYS is not set");

            Process badRate = fleet.start("coordinator-bad-rate", Fleet.COORDINATOR_JAR,
                    withPort(fleet, Map.of("KAGE_DEV_MODE", "true", "MAX_REQUESTS_PER_MINUTE", "fifty")));
            assertThat(badRate.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(badRate.exitValue()).isEqualTo(2);
            assertThat(fleet.log("coordinator-bad-rate")).contains("MAX_REQUESTS_PER_MINUTE=fifty: must be a positive integer");

            Map<String, String> noAgents = fleet.baseEnvironment();
            noAgents.remove("KAGE_AGENTS_FILE");
            Process worker = fleet.start("worker-no-agents", Fleet.WORKER_JAR, noAgents);
            assertThat(worker.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(worker.exitValue()).isEqualTo(2);
            assertThat(fleet.log("worker-no-agents")).contains("KAGE_AGENTS_FILE is not set");
        }
    }

    private static Map<String, String> withPort(Fleet fleet, Map<String, String> extra) {
        Map<String, String> env = fleet.baseEnvironment();
        env.put("PORT", Integer.toString(fleet.port));
        env.putAll(extra);
        return env;
    }

    private static JsonNode agentView(JsonNode task, String agent) {
        for (JsonNode view : task.get("agents")) {
            if (view.get("cli_name").asText().equals(agent)) {
                return view;
            }
        }
        throw new AssertionError("no agent " + agent + " in " + task);
    }

    private static List<String> resultRows(String schema, String taskId) throws Exception {
        DatabaseUrl url = DatabaseUrl.parse("test", TestServices.databaseUrl());
        List<String> rows = new ArrayList<>();
        try (Connection connection = DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password());
             PreparedStatement statement = connection.prepareStatement("SELECT cli_name, status, tokens_in, tokens_out FROM \""
                     + schema + "\".execution_results WHERE task_id = ?::uuid")) {
            statement.setString(1, taskId);
            try (ResultSet rs = statement.executeQuery()) {
                while (rs.next()) {
                    rows.add(rs.getString(1) + ":" + rs.getString(2) + ":" + rs.getLong(3) + ":" + rs.getLong(4));
                }
            }
        }
        return rows;
    }

    static Path createRepo(Path path) throws Exception {
        Files.createDirectories(path);
        git(path, "init", "--quiet", "-b", "main");
        Files.writeString(path.resolve("README.md"), "# e2e\n");
        git(path, "add", "README.md");
        git(path, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "init");
        return path;
    }

    static String git(Path cwd, String... args) throws IOException, InterruptedException {
        List<String> argv = new ArrayList<>(List.of("git"));
        argv.addAll(List.of(args));
        Process process = new ProcessBuilder(argv).directory(cwd.toFile()).redirectErrorStream(true).start();
        String out = new String(process.getInputStream().readAllBytes());
        if (process.waitFor() != 0) {
            throw new IllegalStateException("git " + String.join(" ", args) + ": " + out);
        }
        return out.trim();
    }
}
