package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.queue.JobQueue;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code GET /api/v1/queues} and {@code GET /api/v1/workers} against a live coordinator and real streams. */
class FleetApiTest {
    private static final String KEY = "acme-key-123";
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:" + KEY);
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @Test
    void queuesShowWhatWaitsWhatRunsAndHowOldTheOldestIs() throws Exception {
        for (int i = 0; i < 3; i++) {
            coordinator.submit(KEY, "{\"description\": \"job " + i + "\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        }
        JobQueue queue = new JobQueue(coordinator.redis().keys(), coordinator.redis().redis());
        try (StatefulRedisConnection<String, String> blocking = coordinator.redis().client().connect()) {
            // A worker takes one: it is pending now, under its consumer name.
            assertThat(queue.read(blocking.sync(), "demo", "w-1", Duration.ofSeconds(1), 1)).hasSize(1);
        }
        JsonNode demo = agent(json(coordinator.get("/api/v1/queues", KEY)), "demo");
        JsonNode normal = demo.get("priorities").get(1);
        assertThat(normal.get("priority").asText()).isEqualTo("normal");
        assertThat(normal.get("length").asLong()).isEqualTo(3);
        assertThat(normal.get("waiting").asLong()).isEqualTo(2);
        assertThat(normal.get("pending").asLong()).isEqualTo(1);
        assertThat(normal.get("consumers").asLong()).isEqualTo(1);
        // The oldest entry's age grows on the Redis clock (entry ids are its milliseconds).
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(5)).until(() ->
                agent(json(coordinator.get("/api/v1/queues", KEY)), "demo").get("priorities").get(1).get("oldest_age_ms").asLong() > 0);
        assertThat(demo.get("priorities").get(0).get("length").asLong()).as("high").isZero();
        assertThat(demo.get("delayed").asLong()).isZero();
        assertThat(json(coordinator.get("/api/v1/queues", KEY)).get("dead").asLong()).isZero();
    }

    @Test
    void workersAreTheLiveHeartbeats() throws Exception {
        String heartbeat = coordinator.redis().keys().worker("w-7");
        coordinator.redis().redis().hset(heartbeat, Map.of("agents", "demo,claude-code", "slots", "5", "busy", "2",
                "in_flight", "s/1-0,s/2-0", "heartbeat_at", "2026-11-28T22:00:00Z", "pid", "4242"));
        coordinator.redis().redis().pexpire(heartbeat, 60_000);
        // Workers join the worker set with their heartbeat; one whose heartbeat expired (it died) is left out and dropped.
        coordinator.redis().redis().sadd(coordinator.redis().keys().workers(), "w-7", "w-dead");
        JsonNode workers = json(coordinator.get("/api/v1/workers", KEY)).get("workers");
        assertThat(coordinator.redis().redis().smembers(coordinator.redis().keys().workers())).containsExactly("w-7");
        assertThat(workers).hasSize(1);
        JsonNode worker = workers.get(0);
        assertThat(worker.get("id").asText()).isEqualTo("w-7");
        assertThat(worker.get("agents")).extracting(JsonNode::asText).containsExactly("demo", "claude-code");
        assertThat(worker.get("slots").asInt()).isEqualTo(5);
        assertThat(worker.get("busy").asInt()).isEqualTo(2);
        assertThat(worker.get("in_flight")).hasSize(2);
        coordinator.redis().redis().del(heartbeat);
        assertThat(json(coordinator.get("/api/v1/workers", KEY)).get("workers")).isEmpty();
    }

    private static JsonNode agent(JsonNode queues, String name) {
        for (JsonNode agent : queues.get("agents")) {
            if (agent.get("agent").asText().equals(name)) {
                return agent;
            }
        }
        throw new AssertionError("no agent " + name + " in " + queues);
    }
}
