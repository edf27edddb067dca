package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.task.Priority;
import dev.kage.testing.PrivateRedis;
import io.lettuce.core.Range;
import io.lettuce.core.RedisClient;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A submit's Redis writes (live state, one job per agent, the event) travel in the coordinator's submit pipeline, in
 * flushes shared with other submits. On a private redis-server, so the test may empty its script cache.
 */
class SubmitPipelineApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String BODY = "{\"description\": \"pipelined\", \"cli_assignments\": [{\"cli_name\": \"demo\"}, {\"cli_name\": \"claude-code\"}]}";
    private static PrivateRedis redis;
    private static TestCoordinator coordinator;
    private static RedisClient client;
    private static StatefulRedisConnection<String, String> connection;
    private static RedisCommands<String, String> commands;

    @BeforeAll
    static void start() {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        redis = PrivateRedis.start(PrivateRedis.Persistence.NONE);
        coordinator = new TestCoordinator("acme:acme-key-123", Map.of("REDIS_URL", redis.url()));
        client = RedisClient.create(redis.url());
        connection = client.connect();
        commands = connection.sync();
    }

    @AfterAll
    static void stop() {
        if (connection != null) {
            connection.close();
            client.shutdown();
        }
        if (coordinator != null) {
            coordinator.close();
        }
        if (redis != null) {
            redis.close();
        }
    }

    @Test
    void concurrentSubmitsEachQueueEveryJobOnceWithLiveStateAndEvent() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(16);
        List<Future<String>> submits = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            submits.add(pool.submit(() -> coordinator.submit("acme-key-123", BODY)));
        }
        List<String> ids = new ArrayList<>();
        for (Future<String> submit : submits) {
            ids.add(submit.get());
        }
        pool.shutdown();

        for (String agent : List.of("demo", "claude-code")) {
            Map<String, Long> perTask = entries(coordinator.redis().keys().jobStream(agent, Priority.NORMAL), m -> m.getBody().get("task_id"));
            for (String id : ids) {
                assertThat(perTask.get(id)).as("jobs of task %s for %s", id, agent).isEqualTo(1);
            }
        }
        Map<String, Long> events = entries(coordinator.redis().keys().events(), m -> m.getBody().get("task_id"));
        for (String id : ids) {
            assertThat(events.get(id)).as("task.submitted events of %s", id).isEqualTo(1);
            assertThat(commands.hgetall(coordinator.redis().keys().task("acme", id)))
                    .containsEntry("status", "queued").containsEntry("job:demo", "queued").containsEntry("job:claude-code", "queued");
            assertThat(commands.pttl(coordinator.redis().keys().task("acme", id))).as("live state expires").isPositive();
        }
    }

    @Test
    void aRedisThatForgotTheEnqueueScriptStillGetsEveryJobOnce() throws Exception {
        String before = coordinator.submit("acme-key-123", BODY);
        // As after a Redis restart: the script cache is empty, so the pipelined EVALSHA is refused.
        commands.scriptFlush();
        String after = coordinator.submit("acme-key-123", BODY);
        String again = coordinator.submit("acme-key-123", BODY);
        for (String agent : List.of("demo", "claude-code")) {
            Map<String, Long> perTask = entries(coordinator.redis().keys().jobStream(agent, Priority.NORMAL), m -> m.getBody().get("task_id"));
            assertThat(perTask.get(before)).isEqualTo(1);
            assertThat(perTask.get(after)).as("enqueued through the fallback").isEqualTo(1);
            assertThat(perTask.get(again)).isEqualTo(1);
        }
        HttpResponse<String> read = coordinator.get("/api/v1/tasks/" + after, "acme-key-123");
        assertThat(JSON.readTree(read.body()).get("status").asText()).isEqualTo("queued");
    }

    private static Map<String, Long> entries(String stream, Function<StreamMessage<String, String>, String> by) {
        return commands.xrange(stream, Range.create("-", "+")).stream()
                .filter(m -> by.apply(m) != null)
                .collect(Collectors.groupingBy(by, Collectors.counting()));
    }
}
