package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code GET /prometheus} on a live coordinator with real Redis and Postgres. */
class MetricsApiTest {
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
    void prometheusIsServedWithoutAKeyWithTheQueueGaugesAndTheSubmittedCounter() throws Exception {
        String description = "metrics never carry this description";
        String normal = coordinator.submit(KEY, "{\"description\": \"" + description + "\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        coordinator.submit(KEY, "{\"description\": \"urgent\", \"priority\": \"high\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        coordinator.submit(KEY, "{\"description\": \"urgent too\", \"priority\": \"high\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");

        // The gauges are refreshed in the background: wait for a reading taken after the submits.
        Awaitility.await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> {
            String text = scrape();
            assertThat(sample(text, "kage_queue_depth", "agent=\"demo\"", "priority=\"normal\"")).isEqualTo(1.0);
            assertThat(sample(text, "kage_queue_depth", "agent=\"demo\"", "priority=\"high\"")).isEqualTo(2.0);
            assertThat(sample(text, "kage_queue_oldest_age_seconds", "agent=\"demo\"", "priority=\"normal\"")).isPositive();
        });
        String text = scrape();
        assertThat(sample(text, "kage_queue_depth", "agent=\"demo\"", "priority=\"low\"")).isZero();
        assertThat(sample(text, "kage_queue_pending", "agent=\"demo\"", "priority=\"normal\"")).isZero();
        assertThat(sample(text, "kage_queue_delayed", "agent=\"demo\"")).isZero();
        assertThat(sample(text, "kage_queue_dead_letters")).isZero();
        assertThat(sample(text, "kage_tasks_submitted_total", "tenant=\"acme\"", "priority=\"normal\"")).isEqualTo(1.0);
        assertThat(sample(text, "kage_tasks_submitted_total", "tenant=\"acme\"", "priority=\"high\"")).isEqualTo(2.0);
        // Micronaut's HTTP server metrics, by route template (never a task id in the uri tag).
        assertThat(sample(text, "http_server_requests_seconds_count", "uri=\"/api/v1/tasks\"", "method=\"POST\"",
                "status=\"202\"")).isEqualTo(3.0);
        assertThat(text).contains("# TYPE kage_queue_depth gauge", "# TYPE kage_tasks_submitted_total counter",
                "# TYPE kage_queue_oldest_age_seconds gauge");
        for (String line : text.lines().filter(l -> l.startsWith("kage_")).toList()) {
            assertThat(line).matches("[a-z_]+(\\{[^}]*})? \\S+");
        }
        assertThat(text).doesNotContain(normal, description, KEY);
    }

    @Test
    void theApiStillWantsAKey() throws Exception {
        HttpResponse<String> response = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/queues")).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(response.statusCode()).isEqualTo(401);
    }

    private static String scrape() throws Exception {
        HttpResponse<String> response = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/prometheus")).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(response.statusCode()).as(response.body()).isEqualTo(200);
        assertThat(response.headers().firstValue("Content-Type")).hasValueSatisfying(t -> assertThat(t).startsWith("text/plain"));
        return response.body();
    }

    /** The value of the one sample of {@code name} whose labels include every one of {@code labels}. */
    static double sample(String scrape, String name, String... labels) {
        Matcher m = Pattern.compile("^" + Pattern.quote(name) + "(\\{(.*)})? (\\S+)$", Pattern.MULTILINE).matcher(scrape);
        List<Double> found = new ArrayList<>();
        while (m.find()) {
            String have = m.group(2) == null ? "" : m.group(2);
            if (Arrays.stream(labels).allMatch(have::contains)) {
                found.add(Double.parseDouble(m.group(3)));
            }
        }
        assertThat(found).as(name + " with " + Arrays.toString(labels)).hasSize(1);
        return found.getFirst();
    }
}
