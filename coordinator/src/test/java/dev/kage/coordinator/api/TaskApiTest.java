package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.redis.KageKeys;
import dev.kage.task.Priority;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TestServices;
import io.micronaut.context.ApplicationContext;
import io.micronaut.runtime.server.EmbeddedServer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The HTTP API against a coordinator on a random port, with real Redis and Postgres. */
class TaskApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String SEED_BODY =
            "{\"description\": \"Quick test\", \"cli_assignments\": [{\"cli_name\": \"claude-code\", \"timeout\": 60}]}";
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    private static RedisFixture redis;
    private static String schema;
    private static EmbeddedServer server;

    @BeforeAll
    static void start() {
        redis = new RedisFixture();
        schema = TestServices.newSchema();
        Map<String, String> env = TestServices.environment(redis.namespace(), schema);
        env.put("KAGE_AGENTS_FILE", Path.of("..", "ops", "agents", "agents.yml").toAbsolutePath().normalize().toString());
        env.put("KAGE_API_KEYS", "acme:acme-key-123,globex:globex-key-456");
        Map<String, Object> properties = TestServices.properties(env);
        properties.put("micronaut.server.port", -1);
        server = ApplicationContext.run(EmbeddedServer.class, properties);
    }

    @AfterAll
    static void stop() {
        server.close();
        redis.close();
        TestServices.dropSchema(schema);
    }

    @Test
    void missingOrWrongKeysAre401WithAJsonBody() throws Exception {
        HttpResponse<String> missing = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).POST(body(SEED_BODY)));
        assertThat(missing.statusCode()).isEqualTo(401);
        assertThat(json(missing).get("error").asText()).isEqualTo("unauthorized");
        assertThat(json(missing).get("message").asText()).contains("X-API-Key");

        HttpResponse<String> wrong = send(HttpRequest.newBuilder(uri("/api/v1/tasks/x")).header("X-API-Key", "nope").GET());
        assertThat(wrong.statusCode()).isEqualTo(401);
        assertThat(json(wrong).get("message").asText()).isEqualTo("invalid API key");

        HttpResponse<String> devKey = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "dev-key-12345")
                .POST(body(SEED_BODY)));
        assertThat(devKey.statusCode()).as("the dev key works only in dev mode").isEqualTo(401);
        assertThat(json(devKey).get("message").asText()).as("and says so").contains("KAGE_DEV_MODE=true");
    }

    @Test
    void theSeedsCurlRequestIsAcceptedAndQueuesOneJobPerAgent() throws Exception {
        // curl -d sends application/x-www-form-urlencoded: the seed's own command must work as written.
        HttpResponse<String> response = send(HttpRequest.newBuilder(uri("/api/v1/tasks"))
                .header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(body(SEED_BODY)));
        assertThat(response.statusCode()).isEqualTo(202);
        JsonNode accepted = json(response);
        String id = accepted.get("task_id").asText();
        assertThat(accepted.get("status").asText()).isEqualTo("queued");
        assertThat(accepted.get("status_url").asText()).isEqualTo("/api/v1/tasks/" + id);
        assertThat(response.headers().firstValue("Location")).contains("/api/v1/tasks/" + id);

        KageKeys keys = redis.keys();
        var entries = redis.redis().xrange(keys.jobStream("claude-code", Priority.NORMAL), io.lettuce.core.Range.create("-", "+"));
        assertThat(entries).anySatisfy(entry -> {
            assertThat(entry.getBody()).containsEntry("task_id", id).containsEntry("tenant", "acme")
                    .containsEntry("timeout", "60").containsEntry("description", "Quick test");
        });
        assertThat(redis.redis().hget(keys.task("acme", id), "job:claude-code")).isEqualTo("queued");

        HttpResponse<String> view = send(HttpRequest.newBuilder(uri("/api/v1/tasks/" + id)).header("X-API-Key", "acme-key-123").GET());
        assertThat(view.statusCode()).isEqualTo(200);
        JsonNode task = json(view);
        assertThat(task.get("status").asText()).isEqualTo("queued");
        assertThat(task.get("agents")).hasSize(1);
        assertThat(task.get("agents").get(0).get("cli_name").asText()).isEqualTo("claude-code");
        assertThat(task.get("agents").get(0).get("status").asText()).isEqualTo("queued");
        assertThat(task.get("budget").get("token_limit").asLong()).isEqualTo(50_000);
    }

    @Test
    void aBodyWithoutAnyContentTypeIsAcceptedToo() throws Exception {
        HttpResponse<String> response = send(HttpRequest.newBuilder(uri("/api/v1/tasks"))
                .header("X-API-Key", "acme-key-123").POST(body(SEED_BODY)));
        assertThat(response.statusCode()).isEqualTo(202);
    }

    @Test
    void aRepositoryUrlsCredentialsAreNotShownWithTheTask() throws Exception {
        String body = "{\"description\": \"x\", \"repo\": \"https://x-access-token:ghp_s3cretT0ken@github.example/acme/app.git\","
                + " \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
        HttpResponse<String> submitted = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/json").POST(body(body)));
        assertThat(submitted.statusCode()).as(submitted.body()).isEqualTo(202);
        HttpResponse<String> task = send(HttpRequest.newBuilder(uri("/api/v1/tasks/" + json(submitted).get("task_id").asText()))
                .header("X-API-Key", "acme-key-123").GET());
        assertThat(json(task).get("repo").asText()).isEqualTo("https://***@github.example/acme/app.git");
        assertThat(task.body()).doesNotContain("s3cret");
    }

    @Test
    void anotherTenantsTaskIsNotFound() throws Exception {
        String id = json(send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/json").POST(body(SEED_BODY)))).get("task_id").asText();
        HttpResponse<String> other = send(HttpRequest.newBuilder(uri("/api/v1/tasks/" + id)).header("X-API-Key", "globex-key-456").GET());
        assertThat(other.statusCode()).isEqualTo(404);
        assertThat(json(other).get("error").asText()).isEqualTo("not_found");
        HttpResponse<String> garbage = send(HttpRequest.newBuilder(uri("/api/v1/tasks/not-a-uuid")).header("X-API-Key", "acme-key-123").GET());
        assertThat(garbage.statusCode()).isEqualTo(404);
    }

    @Test
    void invalidBodiesAre400NamingTheFieldAndCreateNoTask() throws Exception {
        long before = redis.redis().xlen(redis.keys().jobStream("claude-code", Priority.NORMAL));
        HttpResponse<String> response = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "acme-key-123")
                .POST(body("{\"description\": \"x\", \"cli_assignments\": [{\"cli_name\": \"bash -c id\", \"timeout\": 60}]}")));
        assertThat(response.statusCode()).isEqualTo(400);
        JsonNode error = json(response);
        assertThat(error.get("error").asText()).isEqualTo("validation_failed");
        assertThat(error.get("errors").get(0).get("field").asText()).isEqualTo("cli_assignments[0].cli_name");
        assertThat(error.get("errors").get(0).get("message").asText()).contains("unknown agent").contains("claude-code");

        HttpResponse<String> broken = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/json").POST(body("{\"description\": ")));
        assertThat(broken.statusCode()).isEqualTo(400);
        assertThat(json(broken).get("errors").get(0).get("field").asText()).isEqualTo("body");

        // A query parameter the submit does not read would otherwise be dropped: ?priority=high ran at normal priority.
        HttpResponse<String> query = send(HttpRequest.newBuilder(uri("/api/v1/tasks?priority=high")).header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/json").POST(body(SEED_BODY)));
        assertThat(query.statusCode()).as(query.body()).isEqualTo(400);
        assertThat(json(query).get("errors").get(0).get("field").asText()).isEqualTo("priority");
        assertThat(json(query).get("errors").get(0).get("message").asText()).contains("takes no query parameters");
        assertThat(redis.redis().xlen(redis.keys().jobStream("claude-code", Priority.NORMAL))).isEqualTo(before);
    }

    @Test
    void hugeBodiesAreRefusedWithoutA5xx() throws Exception {
        String huge = "{\"description\": \"" + "x".repeat(2_000_000) + "\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
        HttpResponse<String> response = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/json").POST(body(huge)));
        assertThat(response.statusCode()).isEqualTo(413);
        assertThat(json(response).get("error").asText()).isEqualTo("payload_too_large");
        assertThat(json(response).get("message").asText()).contains("1048576");
    }

    @Test
    void healthReportsRedisAndPostgres() throws Exception {
        HttpResponse<String> response = send(HttpRequest.newBuilder(uri("/health")).GET());
        assertThat(response.statusCode()).isEqualTo(200);
        assertThat(response.body()).contains("UP");
    }

    private static URI uri(String path) {
        return URI.create("http://localhost:" + server.getPort() + path);
    }

    private static HttpRequest.BodyPublisher body(String text) {
        return HttpRequest.BodyPublishers.ofString(text);
    }

    private static HttpResponse<String> send(HttpRequest.Builder request) throws Exception {
        return HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static JsonNode json(HttpResponse<String> response) throws Exception {
        return JSON.readTree(response.body());
    }
}
