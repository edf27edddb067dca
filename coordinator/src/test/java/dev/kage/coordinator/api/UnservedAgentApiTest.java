package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A task for an agent no live worker serves is accepted (it is durable and runs when a worker comes) and says it
 * is waiting; once a worker's heartbeat names the agent, it no longer does.
 */
class UnservedAgentApiTest {
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
    void aTaskForAnAgentNoLiveWorkerServesIsAcceptedAndSaysItIsWaitingUntilOneComes() throws Exception {
        HttpResponse<String> response = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/tasks"))
                .header("X-API-Key", KEY).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("{\"description\": \"x\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}"))
                .build(), HttpResponse.BodyHandlers.ofString());
        assertThat(response.statusCode()).isEqualTo(202);
        assertThat(response.headers().firstValue("X-Kage-Unserved-Agents")).contains("demo");
        String id = json(response).get("task_id").asText();
        assertThat(json(coordinator.get("/api/v1/tasks/" + id, KEY)).at("/agents/0/waiting").asText())
                .isEqualTo("no live worker serves demo; its jobs wait in the queue until one starts");

        // A worker starts: its heartbeat (what every worker writes every 5 s) names the agent.
        String heartbeat = coordinator.redis().keys().worker("w-1");
        coordinator.redis().redis().hset(heartbeat, Map.of("agents", "claude-code,demo", "slots", "5"));
        coordinator.redis().redis().pexpire(heartbeat, 60_000);
        coordinator.redis().redis().sadd(coordinator.redis().keys().workers(), "w-1");
        await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(200)).until(() ->
                json(coordinator.get("/api/v1/tasks/" + id, KEY)).at("/agents/0/waiting").isNull());
        assertThat(json(coordinator.get("/api/v1/tasks/" + id, KEY)).at("/agents/0/status").asText()).isEqualTo("queued");
        coordinator.redis().redis().del(heartbeat);
    }
}
