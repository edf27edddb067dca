package dev.kage.e2e;

import static org.awaitility.Awaitility.await;

import dev.kage.testing.TestServices;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The packaged coordinator and workers as separate processes on the test Redis and Postgres, each with
 * its own namespace, schema, port and log file. {@link #close()} stops them with SIGTERM (SIGKILL
 * after 30 s) and drops the namespace's keys and the schema.
 */
public final class Fleet implements AutoCloseable {
    public static final Path ROOT = Path.of(System.getProperty("kage.repo.root", "..")).toAbsolutePath().normalize();
    public static final Path COORDINATOR_JAR = Path.of(System.getProperty("kage.coordinator.jar",
            ROOT.resolve("coordinator/target/kage-coordinator.jar").toString()));
    public static final Path WORKER_JAR = Path.of(System.getProperty("kage.worker.jar",
            ROOT.resolve("worker/target/kage-worker.jar").toString()));
    public static final String JAVA = ProcessHandle.current().info().command().orElse("java");

    public final dev.kage.testing.RedisFixture redis = new dev.kage.testing.RedisFixture();
    public final String schema = TestServices.newSchema();
    public final Path logs;
    public final int port;
    private final List<Process> processes = new ArrayList<>();
    private final HttpClient http = HttpClient.newHttpClient();

    public Fleet(Path logs) throws IOException {
        this.logs = Files.createDirectories(logs);
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
    }

    /** Settings every process of this fleet shares. */
    public Map<String, String> baseEnvironment() {
        Map<String, String> env = new HashMap<>(TestServices.environment(redis.namespace(), schema));
        env.put("KAGE_AGENTS_FILE", ROOT.resolve("ops/agents/agents.yml").toString());
        env.put("PATH", System.getenv("PATH"));
        env.put("HOME", System.getProperty("user.home"));
        // As deployed (the images' locale is UTF-8): without one, a worker refuses descriptions it cannot pass on unchanged.
        env.put("LANG", "C.UTF-8");
        return env;
    }

    public Process startCoordinator(Map<String, String> extra) throws IOException {
        Map<String, String> env = baseEnvironment();
        env.put("PORT", Integer.toString(port));
        env.put("KAGE_DEV_MODE", "true");
        env.putAll(extra);
        return start("coordinator", COORDINATOR_JAR, env);
    }

    public Process startWorker(String id, Path workDir, Path defaultRepo, Map<String, String> extra) throws IOException {
        return startWorker(id, id, workDir, defaultRepo, extra);
    }

    /** A worker whose log is {@code logName}.log, so a restarted worker keeps its predecessor's log. */
    public Process startWorker(String logName, String id, Path workDir, Path defaultRepo, Map<String, String> extra) throws IOException {
        Map<String, String> env = baseEnvironment();
        env.put("KAGE_WORKER_ID", id);
        env.put("KAGE_WORK_DIR", workDir.toString());
        env.put("KAGE_DEFAULT_REPO", defaultRepo.toString());
        env.putAll(extra);
        return start(logName, WORKER_JAR, env);
    }

    public Process start(String name, Path jar, Map<String, String> env) throws IOException {
        ProcessBuilder builder = new ProcessBuilder(JAVA, "-Xmx256m", "-jar", jar.toString())
                .redirectErrorStream(true)
                .redirectOutput(logs.resolve(name + ".log").toFile());
        builder.environment().clear();
        builder.environment().putAll(env);
        Process process = builder.start();
        processes.add(process);
        return process;
    }

    /** Waits until {@code count} workers have a heartbeat. */
    public void awaitWorkers(int count) {
        await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(300)).until(() ->
                redis.redis().keys(redis.namespace() + ":worker:*").size() >= count);
    }

    /**
     * Submits {@code count} tasks for {@code agent} on {@code repo} in one {@code POST /api/v1/tasks:batch}; task i's
     * description is {@code description.apply(i)}.
     */
    public void submitBatch(String apiKey, String agent, int count, Path repo, java.util.function.IntFunction<String> description)
            throws IOException, InterruptedException {
        var json = new com.fasterxml.jackson.databind.ObjectMapper();
        var body = json.createObjectNode();
        var tasks = body.putArray("tasks");
        for (int i = 0; i < count; i++) {
            var task = tasks.addObject().put("description", description.apply(i)).put("repo", repo.toString());
            task.putArray("cli_assignments").addObject().put("cli_name", agent).put("timeout", 60);
        }
        HttpResponse<String> response = post("/api/v1/tasks:batch", apiKey, body.toString());
        if (response.statusCode() != 202) {
            throw new AssertionError("batch submit answered " + response.statusCode() + ": " + response.body());
        }
    }

    public void awaitHealthy() {
        await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(300)).until(() -> {
            try {
                return get("/health", null).statusCode() == 200;
            } catch (IOException notYet) {
                return false;
            }
        });
    }

    public HttpResponse<String> get(String path, String key) throws IOException, InterruptedException {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).GET();
        if (key != null) {
            request.header("X-API-Key", key);
        }
        return http.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** POSTs exactly like the seed's curl: no Content-Type that says JSON. */
    public HttpResponse<String> post(String path, String key, String body) throws IOException, InterruptedException {
        return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .header("X-API-Key", key)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** Whether the coordinator has applied its migrations to this fleet's schema. */
    private boolean migrated(dev.kage.config.DatabaseUrl url) throws java.sql.SQLException {
        try (java.sql.Connection connection = java.sql.DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password());
             java.sql.PreparedStatement statement = connection.prepareStatement("SELECT to_regclass(?) IS NOT NULL")) {
            statement.setString(1, "\"" + schema + "\".flyway_schema_history");
            try (java.sql.ResultSet rs = statement.executeQuery()) {
                return rs.next() && rs.getBoolean(1);
            }
        }
    }

    /** Rows of a query on this fleet's schema, as "col1:col2:..." strings. */
    public java.util.List<String> query(String sql, Object... params) throws Exception {
        dev.kage.config.DatabaseUrl url = dev.kage.config.DatabaseUrl.parse("test", TestServices.databaseUrl());
        java.util.List<String> rows = new java.util.ArrayList<>();
        try (java.sql.Connection connection = java.sql.DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password())) {
            connection.createStatement().execute("SET search_path TO \"" + schema + "\"");
            try (java.sql.PreparedStatement statement = connection.prepareStatement(sql)) {
                for (int i = 0; i < params.length; i++) {
                    statement.setObject(i + 1, params[i]);
                }
                try (java.sql.ResultSet rs = statement.executeQuery()) {
                    int columns = rs.getMetaData().getColumnCount();
                    while (rs.next()) {
                        StringBuilder row = new StringBuilder();
                        for (int c = 1; c <= columns; c++) {
                            row.append(c == 1 ? "" : ":").append(rs.getString(c));
                        }
                        rows.add(row.toString());
                    }
                }
            }
        } catch (java.sql.SQLException e) {
            // Before the coordinator has migrated the schema, its tables do not exist yet: no rows. Once it has, a table
            // or column that does not exist is the test's mistake, not "no rows" (a count of 0 would pass isZero()).
            if ("42P01".equals(e.getSQLState()) && !migrated(url)) {
                return rows;
            }
            throw e;
        }
        return rows;
    }

    public long count(String sql, Object... params) throws Exception {
        java.util.List<String> rows = query(sql, params);
        return rows.isEmpty() ? 0 : Long.parseLong(rows.getFirst());
    }

    public String log(String name) throws IOException {
        Path file = logs.resolve(name + ".log");
        return Files.exists(file) ? Files.readString(file) : "";
    }

    @Override
    public void close() throws Exception {
        for (Process process : processes) {
            process.destroy();
        }
        for (Process process : processes) {
            if (!process.waitFor(30, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
        redis.close();
        TestServices.dropSchema(schema);
    }
}
