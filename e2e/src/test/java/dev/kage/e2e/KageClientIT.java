package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The {@code kage} client jar run as a process against a coordinator and one worker: submit with and without
 * {@code --wait}, status, cancel, queues, workers, keys, and its exit codes (0 done, 1 task not completed, 3 refused by
 * the API with the API's message, 4 unreachable). The worker serves {@code demo} (the bundled demo agent) only; the
 * agent {@code idle} is configured but served by no worker, so its tasks stay queued until cancelled.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class KageClientIT {
    static final Path CLIENT_JAR = Path.of(System.getProperty("kage.client.jar",
            Fleet.ROOT.resolve("client/target/kage-client.jar").toString()));
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String DEV_KEY = "dev-key-12345";
    private static final String UUID_LINE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

    private Path dir;
    private Path origin;
    private Fleet fleet;

    record Run(int exit, String out, String err) {
        List<String> lines() {
            return out.lines().toList();
        }
    }

    @BeforeAll
    void startFleet() throws Exception {
        dir = Files.createTempDirectory("kage-client-it");
        origin = FleetIT.createRepo(dir.resolve("origin"));
        Path agents = dir.resolve("agents.yml");
        Files.writeString(agents, "agents:\n"
                + "  demo:\n"
                + "    argv: [\"" + Fleet.ROOT.resolve("ops/agents/demo-agent") + "\", \"-p\", \"{prompt}\", \"--output-format\", \"json\"]\n"
                + "    output: claude-json\n"
                + "  idle:\n"
                + "    type: noop\n");
        fleet = new Fleet(Path.of("target", "e2e-logs", "kage-client"));
        fleet.startCoordinator(Map.of("KAGE_AGENTS_FILE", agents.toString()));
        fleet.startWorker("client-w1", dir.resolve("work"), origin,
                Map.of("KAGE_AGENTS_FILE", agents.toString(), "KAGE_WORKER_AGENTS", "demo"));
        fleet.awaitHealthy();
        fleet.awaitWorkers(1);
    }

    @AfterAll
    void stopFleet() throws Exception {
        if (fleet != null) {
            fleet.close();
        }
    }

    private Map<String, String> env(String key) {
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_URL", "http://127.0.0.1:" + fleet.port);
        env.put("KAGE_API_KEY", key);
        return env;
    }

    private Process start(Map<String, String> env, Path out, Path err, String... args) throws IOException {
        List<String> argv = new ArrayList<>(List.of(Fleet.JAVA, "-jar", CLIENT_JAR.toString()));
        argv.addAll(List.of(args));
        ProcessBuilder builder = new ProcessBuilder(argv).redirectOutput(out.toFile()).redirectError(err.toFile());
        builder.environment().clear();
        builder.environment().put("PATH", System.getenv("PATH"));
        builder.environment().put("HOME", dir.toString()); // no ~/.config/kage/config of the machine's user
        builder.environment().putAll(env);
        return builder.start();
    }

    private Run kage(Map<String, String> env, String... args) throws Exception {
        Path out = Files.createTempFile(dir, "out", ".txt");
        Path err = Files.createTempFile(dir, "err", ".txt");
        Process process = start(env, out, err, args);
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).as("kage " + String.join(" ", args) + " ended").isTrue();
        return new Run(process.exitValue(), Files.readString(out), Files.readString(err));
    }

    private Run kage(String... args) throws Exception {
        return kage(env(DEV_KEY), args);
    }

    @Test
    void submitWaitPrintsEachAgentsProgressAndExitsZeroWhenTheTaskCompletes() throws Exception {
        Run run = kage("submit", "add a line to KAGE_DEMO.md", "--agent", "demo", "--repo", origin.toString(), "--timeout", "60",
                "--priority", "high", "--wait");

        assertThat(run.exit()).as(run.err()).isZero();
        List<String> lines = run.lines();
        String id = lines.getFirst();
        assertThat(id).matches(UUID_LINE);
        assertThat(lines).anyMatch(line -> line.matches("\\d\\d:\\d\\d:\\d\\d  task: submitted for demo"));
        assertThat(lines).anyMatch(line -> line.matches("\\d\\d:\\d\\d:\\d\\d  demo: started on client-w1"));
        assertThat(lines).anyMatch(line -> line.matches("\\d\\d:\\d\\d:\\d\\d  demo: finished completed: [1-9]\\d* tokens \\(in \\d+, out \\d+, from agent\\), "
                + "\\$[0-9.]+, .+, branch kage/" + id + "/demo, 1 file changed, .+ \\(task completed\\)"));
        assertThat(lines.getLast()).matches("task " + id + " completed: 1 of 1 agents completed, [1-9]\\d* tokens, \\$[0-9.]+");
    }

    @Test
    void submitPrintsOnlyTheIdAndStatusShowsTheTaskAsJsonAndAsATable() throws Exception {
        Run submitted = kage("submit", "another line", "-a", "demo", "--repo", origin.toString());
        assertThat(submitted.exit()).as(submitted.err()).isZero();
        assertThat(submitted.out()).matches(UUID_LINE + "\n");
        String id = submitted.out().strip();

        Run json = kage("status", id, "--json");
        assertThat(json.exit()).isZero();
        JsonNode task = JSON.readTree(json.out());
        assertThat(task.get("task_id").asText()).isEqualTo(id);
        assertThat(task.get("agents").get(0).get("cli_name").asText()).isEqualTo("demo");

        Run waited = kage("status", id, "--wait");
        assertThat(waited.exit()).as(waited.out() + waited.err()).isZero();
        Run table = kage("status", id);
        assertThat(table.exit()).isZero();
        assertThat(table.out()).contains("task         " + id).contains("status       completed")
                .containsPattern("demo +completed +[1-9]\\d* +\\$[0-9.]+ .+ client-w1 +kage/" + id + "/demo +1 file changed");
    }

    @Test
    void cancellingAQueuedTaskEndsTheWaitingSubmitWithExitOne() throws Exception {
        Path out = dir.resolve("wait-out.txt");
        Path err = dir.resolve("wait-err.txt");
        Process waiting = start(env(DEV_KEY), out, err, "submit", "nobody serves me", "--agent", "idle", "--wait");
        await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(out).lines().findFirst().isPresent());
        String id = Files.readString(out).lines().findFirst().orElseThrow();
        assertThat(id).matches(UUID_LINE);
        await().atMost(Duration.ofSeconds(10)).until(() -> Files.readString(err).contains("no live worker serves idle yet"));

        Run cancelled = kage("cancel", id);
        assertThat(cancelled.exit()).as(cancelled.err()).isZero();
        assertThat(cancelled.out()).isEqualTo("task " + id + " cancelled (was queued)\n");

        assertThat(waiting.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(waiting.exitValue()).isEqualTo(1);
        List<String> lines = Files.readString(out).lines().toList();
        assertThat(lines).anyMatch(line -> line.endsWith("  task: cancelled"));
        assertThat(lines.getLast()).isEqualTo("task " + id + " cancelled: 0 of 1 agents completed, 0 tokens, $0");

        Run again = kage("cancel", id);
        assertThat(again.exit()).isEqualTo(3);
        assertThat(again.err()).startsWith("kage: 409: ").contains(id);
    }

    @Test
    void watchShowsANewTaskAndHowItsStatusChanges() throws Exception {
        Path out = dir.resolve("watch-out.txt");
        Path err = dir.resolve("watch-err.txt");
        Process watch = start(env(DEV_KEY), out, err, "watch", "--agent", "demo");
        try {
            await().atMost(Duration.ofSeconds(20)).until(() -> Files.readString(err).contains("watching"));
            Run submitted = kage("submit", "watched", "-a", "demo", "--repo", origin.toString());
            String id = submitted.out().strip();
            await().atMost(Duration.ofSeconds(40)).until(() -> !watch.isAlive()
                    || Files.readString(out).lines().anyMatch(line -> line.matches("\\d\\d:\\d\\d:\\d\\d  " + id + "  \\w+ -> completed")));
            assertThat(watch.isAlive()).as(Files.readString(err)).isTrue();
            assertThat(Files.readString(out).lines())
                    .anyMatch(line -> line.matches("\\d\\d:\\d\\d:\\d\\d  " + id + "  (queued|running|completed)  demo  watched"));
        } finally {
            watch.destroy();
            watch.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void queuesAndWorkersShowTheFleet() throws Exception {
        Run queues = kage("queues");
        assertThat(queues.exit()).as(queues.err()).isZero();
        assertThat(queues.out()).startsWith("AGENT  PRIORITY  WAITING  PENDING  LENGTH  CONSUMERS  OLDEST  DELAYED\n")
                .containsPattern("(?m)^demo +high ").containsPattern("(?m)^idle +low ").contains("dead letters: 0");
        JsonNode json = JSON.readTree(kage("queues", "--json").out());
        assertThat(json.get("agents")).hasSize(2);

        Run workers = kage("workers");
        assertThat(workers.exit()).as(workers.err()).isZero();
        assertThat(workers.out()).containsPattern("(?m)^client-w1 +demo +\\d+ +\\d+ ");
    }

    @Test
    void aKeyCreatedWithTheClientWorksUntilItIsRevoked() throws Exception {
        Run created = kage("keys", "create", "--tenant", "acme", "--scopes", "submit,read", "--name", "client-it");
        assertThat(created.exit()).as(created.err()).isZero();
        String key = created.out().strip();
        assertThat(key).matches("kb_[0-9A-Za-z]{32}");
        assertThat(created.err()).contains("for tenant acme").doesNotContain(key);

        Run submitted = kage(env(key), "submit", "acme's task", "--agent", "idle");
        assertThat(submitted.exit()).as(submitted.err()).isZero();
        String id = submitted.out().strip();
        Run status = kage(env(key), "status", id);
        assertThat(status.exit()).as(status.err()).isZero();
        assertThat(status.out()).contains("status       queued").contains("waiting: idle: ");
        // the tenant's key does not manage keys
        Run forbidden = kage(env(key), "keys", "list");
        assertThat(forbidden.exit()).isEqualTo(3);
        assertThat(forbidden.err()).startsWith("kage: 403: this needs an API key with scope 'admin'");

        Run listed = kage("keys", "list", "--tenant", "acme");
        assertThat(listed.out()).contains(key.substring(0, 11) + "…").doesNotContain(key);
        JsonNode keys = JSON.readTree(kage("keys", "list", "--tenant", "acme", "--json").out()).get("keys");
        long keyId = keys.get(0).get("id").asLong();
        Run revoked = kage("keys", "revoke", Long.toString(keyId));
        assertThat(revoked.exit()).as(revoked.err()).isZero();
        assertThat(revoked.out()).startsWith("key " + keyId + " (" + key.substring(0, 11) + "…) of tenant acme revoked at ");

        Run refused = kage(env(key), "status", id);
        assertThat(refused.exit()).isEqualTo(3);
        assertThat(refused.err()).isEqualTo("kage: 401: invalid API key\n");
        assertThat(refused.out()).isEmpty();
        assertThat(kage("cancel", id).exit()).as("another tenant's task").isEqualTo(3);
    }

    @Test
    void anUnknownTaskIsExitThreeWithTheApisMessageAndAnUnreachableCoordinatorExitFour() throws Exception {
        String unknown = UUID.randomUUID().toString();
        Run missing = kage("status", unknown);
        assertThat(missing.exit()).isEqualTo(3);
        assertThat(missing.err()).isEqualTo("kage: 404: no task " + unknown + " for this API key\n");

        int closed;
        try (ServerSocket socket = new ServerSocket(0)) {
            closed = socket.getLocalPort();
        }
        Map<String, String> nowhere = env(DEV_KEY);
        nowhere.put("KAGE_URL", "http://127.0.0.1:" + closed);
        Run unreachable = kage(nowhere, "queues");
        assertThat(unreachable.exit()).isEqualTo(4);
        assertThat(unreachable.err()).startsWith("kage: cannot reach the coordinator at http://127.0.0.1:" + closed);
    }
}
