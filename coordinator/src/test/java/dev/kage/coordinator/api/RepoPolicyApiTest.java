package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.task.Priority;
import java.net.http.HttpResponse;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code KAGE_REPO_ALLOW}: a tenant's tasks name only the repositories its operator allowed it. */
class RepoPolicyApiTest {
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123,globex:globex-key-456",
                Map.of("KAGE_REPO_ALLOW", "acme=/srv/repos/acme/ *=https://git.example/shared/"));
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    private static String task(String repo) {
        return "{\"description\": \"x\"," + (repo == null ? "" : " \"repo\": \"" + repo + "\",")
                + " \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
    }

    @Test
    void aTenantsTaskNamesOnlyItsAllowedRepositoriesAndARefusedBatchCreatesNothing() throws Exception {
        String stream = coordinator.redis().keys().jobStream("demo", Priority.NORMAL);
        assertThat(coordinator.send("POST", "/api/v1/tasks", "acme-key-123", task("/srv/repos/acme/app")).statusCode()).isEqualTo(202);
        assertThat(coordinator.send("POST", "/api/v1/tasks", "globex-key-456", task("https://git.example/shared/lib.git"))
                .statusCode()).isEqualTo(202);
        assertThat(coordinator.send("POST", "/api/v1/tasks", "globex-key-456", task(null)).statusCode())
                .as("no repo: the workers' default").isEqualTo(202);
        long queued = coordinator.redis().redis().xlen(stream);

        HttpResponse<String> other = coordinator.send("POST", "/api/v1/tasks", "globex-key-456", task("/srv/repos/acme/app"));
        assertThat(other.statusCode()).as(other.body()).isEqualTo(400);
        JsonNode error = TestCoordinator.json(other).get("errors").get(0);
        assertThat(error.get("field").asText()).isEqualTo("repo");
        assertThat(error.get("message").asText()).contains("is not a repository this tenant may use");
        HttpResponse<String> climbing = coordinator.send("POST", "/api/v1/tasks", "acme-key-123",
                task("/srv/repos/acme/../globex/app"));
        assertThat(climbing.statusCode()).as(climbing.body()).isEqualTo(400);

        HttpResponse<String> batch = coordinator.send("POST", "/api/v1/tasks:batch", "acme-key-123",
                "{\"tasks\": [" + task("/srv/repos/acme/a") + ", " + task("file:///etc") + "]}");
        assertThat(batch.statusCode()).as(batch.body()).isEqualTo(400);
        assertThat(TestCoordinator.json(batch).get("errors").get(0).get("field").asText()).isEqualTo("tasks[1].repo");
        assertThat(coordinator.redis().redis().xlen(stream)).as("nothing refused was queued").isEqualTo(queued);
    }
}
