package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;
import dev.kage.task.TaskStatus;
import java.net.URLEncoder;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code GET /api/v1/tasks} against a live coordinator with real Redis and Postgres. Each test lists its own tenant. */
class TaskListApiTest {
    private static final String DEMO = "{\"description\": \"%s\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
    private static final String BOTH = "{\"description\": \"%s\", \"priority\": \"high\", "
            + "\"cli_assignments\": [{\"cli_name\": \"claude-code\"}, {\"cli_name\": \"demo\"}]}";

    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123,globex:globex-key-456,pager:pager-key-789,"
                + "filter:filter-key-000,bad:bad-key-1234,empty:empty-key-5678");
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @Test
    void aTenantListsOnlyItsOwnTasksNewestFirst() throws Exception {
        String long250 = "x".repeat(250);
        String first = coordinator.submit("acme-key-123", DEMO.formatted("first"));
        String second = coordinator.submit("acme-key-123", BOTH.formatted(long250));
        String theirs = coordinator.submit("globex-key-456", DEMO.formatted("globex's"));

        JsonNode page = json(list("acme-key-123", ""));
        assertThat(ids(page)).containsExactly(second, first);
        assertThat(page.get("next_cursor").isNull()).isTrue();
        JsonNode newest = page.get("tasks").get(0);
        assertThat(newest.get("status").asText()).isEqualTo("queued");
        assertThat(newest.get("priority").asText()).isEqualTo("high");
        assertThat(newest.get("description").asText()).isEqualTo("x".repeat(200));
        assertThat(newest.get("agents")).extracting(JsonNode::asText).containsExactly("claude-code", "demo");
        assertThat(newest.get("created_at").asText()).isNotBlank();
        assertThat(newest.get("updated_at").asText()).isNotBlank();
        assertThat(newest.has("completed_at")).isTrue();
        assertThat(newest.get("completed_at").isNull()).isTrue();

        assertThat(ids(json(list("globex-key-456", "")))).containsExactly(theirs);
        assertThat(ids(json(list("empty-key-5678", "")))).isEmpty();
    }

    @Test
    void filtersByStatusAgentAndSinceAlsoTogether() throws Exception {
        String key = "filter-key-000";
        String demoDone = coordinator.submit(key, DEMO.formatted("demo, completed"));
        String bothFailed = coordinator.submit(key, BOTH.formatted("both, failed"));
        String bothQueued = coordinator.submit(key, BOTH.formatted("both, queued"));
        String oldDemo = coordinator.submit(key, DEMO.formatted("demo, long ago"));
        TaskStore store = coordinator.context().getBean(TaskStore.class);
        store.setStatus(UUID.fromString(demoDone), TaskStatus.COMPLETED);
        store.setStatus(UUID.fromString(bothFailed), TaskStatus.FAILED);
        setCreatedAt(oldDemo, Instant.parse("2020-01-01T00:00:00Z"));

        assertThat(ids(json(list(key, "status=completed")))).containsExactly(demoDone);
        assertThat(ids(json(list(key, "status=completed,failed")))).containsExactly(bothFailed, demoDone);
        assertThat(ids(json(list(key, "status=failed&status=queued")))).containsExactly(bothQueued, bothFailed, oldDemo);
        assertThat(ids(json(list(key, "agent=claude-code")))).containsExactly(bothQueued, bothFailed);
        assertThat(ids(json(list(key, "agent=demo")))).containsExactly(bothQueued, bothFailed, demoDone, oldDemo);
        assertThat(ids(json(list(key, "since=2024-01-01T00:00:00Z")))).containsExactly(bothQueued, bothFailed, demoDone);
        assertThat(ids(json(list(key, "since=" + encode("2019-12-31T23:30:00-01:00")))))
                .as("the offset counts").containsExactly(bothQueued, bothFailed, demoDone);
        assertThat(ids(json(list(key, "agent=demo&status=queued&since=2024-01-01T00:00:00Z")))).containsExactly(bothQueued);
        assertThat(ids(json(list(key, "status=running")))).isEmpty();
    }

    @Test
    void aCursorWalksTwentyFiveTasksInThreePagesWithoutGapsOrDuplicates() throws Exception {
        String key = "pager-key-789";
        List<String> submitted = new ArrayList<>();
        for (int i = 0; i < 25; i++) {
            submitted.add(coordinator.submit(key, DEMO.formatted("task " + i)));
        }
        // Several tasks share each instant, so only the id orders them within it.
        Instant base = Instant.parse("2025-06-01T10:00:00.654321Z");
        for (int i = 0; i < submitted.size(); i++) {
            setCreatedAt(submitted.get(i), base.plusMillis(i / 4));
        }

        assertThat(json(list(key, "")).get("tasks")).as("default limit").hasSize(20);

        List<String> seen = new ArrayList<>();
        List<Integer> sizes = new ArrayList<>();
        String cursor = null;
        do {
            JsonNode page = json(list(key, "limit=10" + (cursor == null ? "" : "&cursor=" + cursor)));
            sizes.add(page.get("tasks").size());
            seen.addAll(ids(page));
            cursor = page.get("next_cursor").isNull() ? null : page.get("next_cursor").asText();
        } while (cursor != null && sizes.size() < 5);

        assertThat(sizes).containsExactly(10, 10, 5);
        assertThat(seen).doesNotHaveDuplicates().containsExactlyInAnyOrderElementsOf(submitted);
        List<String> newestFirst = coordinator.context().getBean(Database.class).jdbi().withHandle(h -> h.createQuery(
                        "SELECT id::text FROM tasks WHERE tenant = 'pager' ORDER BY created_at DESC, id DESC")
                .mapTo(String.class).list());
        assertThat(seen).containsExactlyElementsOf(newestFirst);
    }

    @Test
    void badParametersAre400NamingEachParameter() throws Exception {
        String key = "bad-key-1234";
        assertBad(list(key, "status=done"), "status", "queued, running, completed, partial, failed, cancelled");
        assertBad(list(key, "status=queued,"), "status", "is not a status");
        assertBad(list(key, "agent=bash"), "agent", "unknown agent 'bash'");
        assertBad(list(key, "since=yesterday"), "since", "ISO-8601");
        assertBad(list(key, "limit=0"), "limit", "1 to 100");
        assertBad(list(key, "limit=101"), "limit", "1 to 100");
        assertBad(list(key, "limit=ten"), "limit", "1 to 100");
        assertBad(list(key, "limit=5&limit=6"), "limit", "give it once");
        assertBad(list(key, "cursor=not-a-cursor"), "cursor", "next_cursor");
        // A misspelt filter would list every task: refused, named.
        assertBad(list(key, "state=failed"), "state", "is not a parameter of this route; it takes agent, cursor, limit, since, status");
        assertBad(list(key, "statuses=failed"), "statuses", "agent, cursor, limit, since, status");
        // A cursor's shape with an instant past Postgres's range: refused like any cursor the API never handed out (the
        // query failed, a false 503).
        String farFuture = java.util.Base64.getUrlEncoder().withoutPadding().encodeToString(
                "+300000-01-01T00:00:00Z|00000000-0000-0000-0000-000000000000".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        assertBad(list(key, "cursor=" + farFuture), "cursor", "next_cursor");

        HttpResponse<String> several = list(key, "status=x&limit=1000&since=now");
        assertThat(several.statusCode()).isEqualTo(400);
        assertThat(fields(json(several))).containsExactlyInAnyOrder("status", "limit", "since");
    }

    @Test
    void listingNeedsAnApiKey() throws Exception {
        HttpResponse<String> response = coordinator.http().send(java.net.http.HttpRequest.newBuilder(
                coordinator.uri("/api/v1/tasks")).GET().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(response.statusCode()).isEqualTo(401);
    }

    private static void assertBad(HttpResponse<String> response, String field, String messagePart) throws Exception {
        assertThat(response.statusCode()).as(response.body()).isEqualTo(400);
        assertThat(response.headers().firstValue("Content-Type")).hasValueSatisfying(t -> assertThat(t).startsWith("application/json"));
        JsonNode body = json(response);
        assertThat(body.get("error").asText()).isEqualTo("validation_failed");
        assertThat(body.get("errors")).hasSize(1);
        assertThat(body.get("errors").get(0).get("field").asText()).isEqualTo(field);
        assertThat(body.get("errors").get(0).get("message").asText()).contains(messagePart);
    }

    private static List<String> fields(JsonNode body) {
        return StreamSupport.stream(body.get("errors").spliterator(), false).map(e -> e.get("field").asText()).toList();
    }

    private static HttpResponse<String> list(String key, String query) throws Exception {
        return coordinator.get("/api/v1/tasks" + (query.isEmpty() ? "" : "?" + query), key);
    }

    private static List<String> ids(JsonNode page) {
        assertThat(page.has("tasks")).as(page.toString()).isTrue();
        return StreamSupport.stream(page.get("tasks").spliterator(), false).map(t -> t.get("task_id").asText()).toList();
    }

    private static void setCreatedAt(String id, Instant at) {
        coordinator.context().getBean(Database.class).jdbi().useHandle(h -> h.createUpdate(
                        "UPDATE tasks SET created_at = :at WHERE id = :id")
                .bind("at", at.atOffset(ZoneOffset.UTC))
                .bind("id", UUID.fromString(id))
                .execute());
    }

    private static String encode(String value) {
        return URLEncoder.encode(value, StandardCharsets.UTF_8);
    }
}
