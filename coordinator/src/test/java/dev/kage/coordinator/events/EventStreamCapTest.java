package dev.kage.coordinator.events;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.coordinator.api.TestCoordinator;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * One tenant holds at most {@code KAGE_MAX_EVENT_STREAMS_PER_TENANT} event streams on a coordinator (2 here): each one
 * buffers in the hub and asks Postgres at every keep-alive, on threads and connections every tenant's submits share.
 */
class EventStreamCapTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String ACME = "acme-key-123";
    private static final String GLOBEX = "globex-key-456";
    private static final String TASK = "{\"description\": \"stream me\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";

    private static TestCoordinator coordinator;
    private final List<SseReader> open = new ArrayList<>();

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123,globex:globex-key-456",
                Map.of("kage.events.keep-alive", "1s", "kage.max.event.streams.per.tenant", "2"));
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @AfterEach
    void closeStreams() {
        open.forEach(SseReader::close);
    }

    @Test
    void aTenantsStreamPastTheCapIsA429JsonAndAnotherTenantIsNotHeldBack() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        SseReader first = stream("/api/v1/events", ACME);
        SseReader second = stream("/api/v1/tasks/" + task + "/events", ACME);
        assertThat(first.response().statusCode()).isEqualTo(200);
        assertThat(second.response().statusCode()).isEqualTo(200);

        for (String path : List.of("/api/v1/events", "/api/v1/tasks/" + task + "/events")) {
            SseReader refused = stream(path, ACME);
            assertThat(refused.response().statusCode()).as(path).isEqualTo(429);
            assertThat(refused.response().headers().firstValue("Retry-After")).contains("15");
            await().atMost(Duration.ofSeconds(10)).until(refused::ended);
            JsonNode body = JSON.readTree(refused.text());
            assertThat(body.get("error").asText()).isEqualTo("too_many_streams");
            assertThat(body.get("message").asText()).contains("KAGE_MAX_EVENT_STREAMS_PER_TENANT")
                    .contains("GET /api/v1/events");
        }
        assertThat(stream("/api/v1/events", GLOBEX).response().statusCode()).as("another tenant").isEqualTo(200);

        // A stream the client closes frees its place.
        EventHub hub = coordinator.context().getBean(EventHub.class);
        first.close();
        await().atMost(Duration.ofSeconds(30)).until(() -> hub.streams("acme") == 1);
        assertThat(stream("/api/v1/events", ACME).response().statusCode()).isEqualTo(200);
        assertThat(hub.streams("acme")).isEqualTo(2);
    }

    @Test
    void theCapIsReadAtStartUpAndABadOneNamesTheVariable() {
        assertThat(EventHub.maxStreamsPerTenant(dev.kage.config.Env.of(Map.of()))).isEqualTo(500);
        assertThat(EventHub.maxStreamsPerTenant(dev.kage.config.Env.of(Map.of("KAGE_MAX_EVENT_STREAMS_PER_TENANT", "20"))))
                .isEqualTo(20);
        for (String bad : List.of("0", "-1", "many")) {
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> EventHub.maxStreamsPerTenant(
                            dev.kage.config.Env.of(Map.of("KAGE_MAX_EVENT_STREAMS_PER_TENANT", bad))))
                    .isInstanceOf(dev.kage.config.ConfigException.class)
                    .hasMessageContaining("KAGE_MAX_EVENT_STREAMS_PER_TENANT=" + bad + ": must be an integer from 1");
        }
    }

    private SseReader stream(String path, String key) {
        SseReader reader = new SseReader(coordinator.http(), coordinator.uri(path), key, null);
        open.add(reader);
        return reader;
    }
}
