package dev.kage.coordinator.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TestServices;
import io.micronaut.context.ApplicationContext;
import io.micronaut.runtime.server.EmbeddedServer;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Map;

/**
 * A coordinator on a random port with its own Redis namespace and Postgres schema, for API tests; {@link #close()}
 * stops it and removes both.
 */
public final class TestCoordinator implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final RedisFixture redis = new RedisFixture();
    private final String schema;
    private final EmbeddedServer server;
    private final HttpClient http = HttpClient.newHttpClient();

    /**
     * @param apiKeys {@code KAGE_API_KEYS}, e.g. {@code acme:acme-key-123,globex:globex-key-456}
     */
    public TestCoordinator(String apiKeys) {
        this(apiKeys, Map.of());
    }

    /**
     * @param extra more settings, e.g. {@code KAGE_ADMIN_TENANTS}
     */
    public TestCoordinator(String apiKeys, Map<String, String> extra) {
        this(TestServices.newSchema(), apiKeys, extra);
    }

    /**
     * @param schema  the Postgres schema to use (and drop at {@link #close()}), e.g. one a test prepared
     * @param apiKeys {@code KAGE_API_KEYS}, {@code null} for none
     */
    public TestCoordinator(String schema, String apiKeys, Map<String, String> extra) {
        this.schema = schema;
        Map<String, String> env = TestServices.environment(redis.namespace(), schema);
        env.put("KAGE_AGENTS_FILE", Path.of("..", "ops", "agents", "agents.yml").toAbsolutePath().normalize().toString());
        if (apiKeys != null) {
            env.put("KAGE_API_KEYS", apiKeys);
        }
        env.putAll(extra);
        Map<String, Object> properties = TestServices.properties(env);
        properties.put("micronaut.server.port", -1);
        try {
            server = ApplicationContext.run(EmbeddedServer.class, properties);
        } catch (RuntimeException e) {
            redis.close();
            throw e;
        }
    }

    public String schema() {
        return schema;
    }

    public RedisFixture redis() {
        return redis;
    }

    public ApplicationContext context() {
        return server.getApplicationContext();
    }

    public URI uri(String pathAndQuery) {
        return URI.create("http://localhost:" + server.getPort() + pathAndQuery);
    }

    public HttpClient http() {
        return http;
    }

    public HttpResponse<String> get(String pathAndQuery, String apiKey) throws IOException, InterruptedException {
        return http.send(HttpRequest.newBuilder(uri(pathAndQuery)).header("X-API-Key", apiKey).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }

    /** Any request; {@code body} {@code null} for none. */
    public HttpResponse<String> send(String method, String pathAndQuery, String apiKey, String body)
            throws IOException, InterruptedException {
        HttpRequest.Builder builder = HttpRequest.newBuilder(uri(pathAndQuery)).header("X-API-Key", apiKey)
                .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        if (body != null) {
            builder.header("Content-Type", "application/json");
        }
        return http.send(builder.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** Submits a task through the API and returns its id. */
    public String submit(String apiKey, String body) throws IOException, InterruptedException {
        HttpResponse<String> response = http.send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", apiKey)
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 202) {
            throw new AssertionError("submit answered " + response.statusCode() + ": " + response.body());
        }
        return json(response).get("task_id").asText();
    }

    public static JsonNode json(HttpResponse<String> response) throws IOException {
        return JSON.readTree(response.body());
    }

    /**
     * Stops the coordinator as at shutdown (its server, then its beans), keeping its Redis namespace and schema for the
     * test to look at until {@link #close()}.
     */
    public void stop() {
        server.stop();
    }

    @Override
    public void close() {
        server.close();
        redis.close();
        TestServices.dropSchema(schema);
    }
}
