package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.task.Priority;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import io.micronaut.context.ApplicationContext;
import io.micronaut.runtime.server.EmbeddedServer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The coordinator while Postgres or Redis is unreachable (cut by a TCP proxy in front of the real servers). */
class OutageApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String BODY =
            "{\"description\": \"Quick test\", \"cli_assignments\": [{\"cli_name\": \"claude-code\", \"timeout\": 60}]}";

    private final RedisFixture redis = new RedisFixture();
    private final String schema = TestServices.newSchema();
    private final HttpClient http = HttpClient.newHttpClient();
    private TcpProxy postgresProxy;
    private TcpProxy redisProxy;
    private EmbeddedServer server;

    @BeforeEach
    void start() throws Exception {
        URI db = URI.create(TestServices.databaseUrl());
        URI rd = URI.create(TestServices.redisUrl());
        postgresProxy = TcpProxy.start(db.getHost(), db.getPort() > 0 ? db.getPort() : 5432);
        redisProxy = TcpProxy.start(rd.getHost(), rd.getPort() > 0 ? rd.getPort() : 6379);
        Map<String, String> env = TestServices.environment(redis.namespace(), schema);
        env.put("DATABASE_URL", TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), postgresProxy));
        env.put("REDIS_URL", TcpProxy.redirectRedisUrl(TestServices.redisUrl(), redisProxy));
        env.put("KAGE_AGENTS_FILE", Path.of("..", "ops", "agents", "agents.yml").toAbsolutePath().normalize().toString());
        env.put("KAGE_API_KEYS", "acme:acme-key-123");
        Map<String, Object> properties = TestServices.properties(env);
        properties.put("micronaut.server.port", -1);
        properties.put("kage.reconcile.every", "1s");
        properties.put("kage.events.keep-alive", "1s");
        server = ApplicationContext.run(EmbeddedServer.class, properties);
    }

    @AfterEach
    void stop() {
        server.close();
        postgresProxy.close();
        redisProxy.close();
        redis.close();
        TestServices.dropSchema(schema);
    }

    @Test
    void withPostgresDownTheApiAnswers503NotA500() throws Exception {
        postgresProxy.cut();
        HttpResponse<String> submit = submit();
        assertThat(submit.statusCode()).as(submit.body()).isEqualTo(503);
        assertThat(JSON.readTree(submit.body()).get("error").asText()).isEqualTo("database_unavailable");
        assertThat(submit.headers().firstValue("Retry-After")).isPresent();
        HttpResponse<String> read = send(HttpRequest.newBuilder(uri("/api/v1/tasks/" + java.util.UUID.randomUUID()))
                .header("X-API-Key", "acme-key-123").GET());
        assertThat(read.statusCode()).isEqualTo(503);
        HttpResponse<String> health = send(HttpRequest.newBuilder(uri("/health")).GET());
        assertThat(health.statusCode()).isEqualTo(503);
        HttpResponse<String> readiness = send(HttpRequest.newBuilder(uri("/health/readiness")).GET());
        assertThat(readiness.statusCode()).isEqualTo(503);
        assertThat(JSON.readTree(readiness.body()).at("/details/kage-backends/details/postgres").asText()).isEqualTo("DOWN");
        // A key of no form Postgres could hold is refused without asking it: a flood of made-up keys costs no query.
        HttpResponse<String> madeUp = send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "not-a-kage-key").GET());
        assertThat(madeUp.statusCode()).as(madeUp.body()).isEqualTo(401);
        HttpResponse<String> storedForm = send(HttpRequest.newBuilder(uri("/api/v1/tasks"))
                .header("X-API-Key", "kb_" + "A".repeat(32)).GET());
        assertThat(storedForm.statusCode()).as("only Postgres can tell: %s", storedForm.body()).isEqualTo(503);
        // Alive all the same: an orchestrator must not restart the coordinator for a backend outage.
        assertThat(send(HttpRequest.newBuilder(uri("/health/liveness")).GET()).statusCode()).isEqualTo(200);

        postgresProxy.restore();
        await().atMost(Duration.ofSeconds(20)).until(() -> submit().statusCode() == 202);
    }

    @Test
    void aHungPostgresNeitherHoldsTheHealthCheckNorStopsLivenessAnswering() throws Exception {
        // Postgres stops answering without closing anything (a stopped process, a host gone): every probe of a pooled
        // connection waits for the socket timeout. Sixteen health checks at once are more than the HTTP event loops.
        assertThat(send(HttpRequest.newBuilder(uri("/health")).GET()).statusCode()).isEqualTo(200);
        postgresProxy.stall();
        List<java.util.concurrent.CompletableFuture<HttpResponse<String>>> checks = new java.util.ArrayList<>();
        for (int i = 0; i < 16; i++) {
            checks.add(http.sendAsync(HttpRequest.newBuilder(uri("/health")).timeout(Duration.ofSeconds(30)).GET().build(),
                    HttpResponse.BodyHandlers.ofString()));
        }
        HttpResponse<String> liveness = http.send(HttpRequest.newBuilder(uri("/health/liveness")).timeout(Duration.ofSeconds(20))
                .GET().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(liveness.statusCode()).as("answered while the checks wait on Postgres").isEqualTo(200);
        for (var check : checks) {
            HttpResponse<String> health = check.get(30, java.util.concurrent.TimeUnit.SECONDS);
            assertThat(health.statusCode()).as("a check that hangs counts as DOWN").isEqualTo(503);
            assertThat(JSON.readTree(health.body()).at("/details/kage-backends/details/postgres").asText()).isEqualTo("DOWN");
            assertThat(JSON.readTree(health.body()).at("/details/kage-backends/details/redis").asText()).isEqualTo("UP");
        }
        postgresProxy.resume();
    }

    @Test
    void anEventStreamKeepsItsKeepAlivesWhilePostgresHangs() throws Exception {
        // Each keep-alive also asks Postgres (has the task ended, is the key still good): a hung Postgres must not hold
        // the comment back, or a proxy's idle timeout cuts the stream.
        HttpResponse<String> submitted = submit();
        assertThat(submitted.statusCode()).isEqualTo(202);
        String task = JSON.readTree(submitted.body()).get("task_id").asText();
        List<String> lines = new java.util.concurrent.CopyOnWriteArrayList<>();
        var stream = http.sendAsync(HttpRequest.newBuilder(uri("/api/v1/tasks/" + task + "/events")).header("X-API-Key", "acme-key-123")
                .GET().build(), HttpResponse.BodyHandlers.ofLines()).thenAccept(r -> r.body().forEach(lines::add));
        await().atMost(Duration.ofSeconds(10)).until(() -> lines.stream().anyMatch(l -> l.startsWith(": keep-alive")));
        postgresProxy.stall();
        long before = lines.stream().filter(l -> l.startsWith(": keep-alive")).count();
        await().atMost(Duration.ofSeconds(30)).until(() -> lines.stream().filter(l -> l.startsWith(": keep-alive")).count() >= before + 8);
        assertThat(stream.isDone()).as("the stream goes on").isFalse();
        postgresProxy.resume();
        stream.cancel(true);
    }

    @Test
    void withRedisDownATaskIsStillAcceptedAndEnqueuedWhenRedisReturns() throws Exception {
        redisProxy.cut();
        HttpResponse<String> submit = submit();
        assertThat(submit.statusCode()).as(submit.body()).isEqualTo(202);
        String id = JSON.readTree(submit.body()).get("task_id").asText();
        redisProxy.restore();
        String stream = redis.keys().jobStream("claude-code", Priority.NORMAL);
        await().atMost(Duration.ofSeconds(40)).until(() -> redis.redis().exists(stream) == 1
                && redis.redis().xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .anyMatch(m -> id.equals(m.getBody().get("task_id"))));
    }

    @Test
    void aCancelMadeWhileRedisIsDownStandsAndReachesTheWorkersWhenRedisReturns() throws Exception {
        // Workers learn of a cancel from the task's live state in Redis: one committed in Postgres alone would let its
        // queued jobs start all the same.
        HttpResponse<String> submit = submit();
        assertThat(submit.statusCode()).as(submit.body()).isEqualTo(202);
        String id = JSON.readTree(submit.body()).get("task_id").asText();
        redisProxy.cut();
        HttpResponse<String> cancel = send(HttpRequest.newBuilder(uri("/api/v1/tasks/" + id + "/cancel"))
                .header("X-API-Key", "acme-key-123").POST(HttpRequest.BodyPublishers.noBody()));
        assertThat(cancel.statusCode()).as(cancel.body()).isEqualTo(202);
        assertThat(JSON.readTree(cancel.body()).get("status").asText()).isEqualTo("cancelled");
        String live = redis.keys().task("acme", id);
        assertThat(redis.redis().hget(live, "cancelled")).as("not yet: Redis is away").isNull();
        redisProxy.restore();
        await().atMost(Duration.ofSeconds(40)).until(() -> "1".equals(redis.redis().hget(live, "cancelled")));
    }

    @Test
    void withRedisDownTheScrapeStillAnswersAndTheQueueGaugesReadUnknown() throws Exception {
        redisProxy.cut();
        await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> {
            long started = System.nanoTime();
            HttpResponse<String> scrape = send(HttpRequest.newBuilder(uri("/prometheus")).GET());
            assertThat(Duration.ofNanos(System.nanoTime() - started)).as("a scrape never waits for Redis")
                    .isLessThan(Duration.ofSeconds(3));
            assertThat(scrape.statusCode()).isEqualTo(200);
            assertThat(MetricsApiTest.sample(scrape.body(), "kage_queue_depth", "agent=\"claude-code\"", "priority=\"normal\""))
                    .isNaN();
            assertThat(MetricsApiTest.sample(scrape.body(), "kage_queue_refresh_errors_total")).isPositive();
        });
        redisProxy.restore();
        await().atMost(Duration.ofSeconds(40)).until(() -> MetricsApiTest.sample(
                send(HttpRequest.newBuilder(uri("/prometheus")).GET()).body(), "kage_queue_depth", "agent=\"claude-code\"",
                "priority=\"normal\"") == 0.0);
    }

    private HttpResponse<String> submit() throws Exception {
        return send(HttpRequest.newBuilder(uri("/api/v1/tasks")).header("X-API-Key", "acme-key-123")
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(BODY)));
    }

    private URI uri(String path) {
        return URI.create("http://localhost:" + server.getPort() + path);
    }

    private HttpResponse<String> send(HttpRequest.Builder request) throws Exception {
        return http.send(request.timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
    }
}
