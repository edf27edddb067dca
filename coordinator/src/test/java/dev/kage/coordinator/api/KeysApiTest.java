package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static dev.kage.store.StoreTestData.result;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.coordinator.auth.ApiKeyStore;
import dev.kage.coordinator.auth.ApiKeys;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;
import dev.kage.task.JobStatus;
import dev.kage.task.TaskRecord;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code /api/v1/keys}, keys kept in Postgres, their scopes and tenants' isolation, against a live coordinator whose
 * key cache lives 1 second ({@code KAGE_API_KEY_CACHE_SECONDS=1}).
 */
class KeysApiTest {
    private static final String OPS = "ops-admin-key-1";
    private static final String SEED_BODY = "{\"description\": \"Quick test\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("ops:" + OPS, Map.of("KAGE_ADMIN_TENANTS", "ops", "KAGE_API_KEY_CACHE_SECONDS", "1"));
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    private record Key(long id, String key) {
    }

    private static Key create(String tenant, String... scopes) throws Exception {
        String body = "{\"tenant\": \"" + tenant + "\", \"name\": \"test\", \"scopes\": [\"" + String.join("\", \"", scopes) + "\"]}";
        HttpResponse<String> response = coordinator.send("POST", "/api/v1/keys", OPS, body);
        assertThat(response.statusCode()).as(response.body()).isEqualTo(201);
        return new Key(json(response).get("id").asLong(), json(response).get("key").asText());
    }

    @Test
    void aCreatedKeyIsShownOnceAndListsShowOnlyItsPrefix() throws Exception {
        HttpResponse<String> response = coordinator.send("POST", "/api/v1/keys", OPS,
                "{\"tenant\": \"initech\", \"name\": \"build server\", \"scopes\": [\"read\", \"submit\"]}");
        assertThat(response.statusCode()).as(response.body()).isEqualTo(201);
        JsonNode created = json(response);
        String key = created.get("key").asText();
        assertThat(key).matches("kb_[0-9A-Za-z]{32}");
        assertThat(created.get("prefix").asText()).isEqualTo(key.substring(0, 11));
        assertThat(created.get("scopes")).extracting(JsonNode::asText).containsExactly("submit", "read");
        assertThat(response.headers().firstValue("Location")).contains("/api/v1/keys/" + created.get("id").asLong());

        HttpResponse<String> list = coordinator.get("/api/v1/keys?tenant=initech", OPS);
        assertThat(list.statusCode()).isEqualTo(200);
        assertThat(list.body()).doesNotContain(key.substring(11)).doesNotContain(HexFormat.of().formatHex(ApiKeys.sha256(key)))
                .doesNotContain("sha256");
        JsonNode listed = json(list).get("keys");
        assertThat(listed).hasSize(1);
        assertThat(listed.get(0).get("prefix").asText()).isEqualTo(key.substring(0, 11));
        assertThat(listed.get(0).get("name").asText()).isEqualTo("build server");
        assertThat(listed.get(0).get("tenant").asText()).isEqualTo("initech");
        assertThat(listed.get(0).has("key")).isFalse();
        assertThat(listed.get(0).get("revoked_at").isNull()).isTrue();
        assertThat(json(coordinator.get("/api/v1/keys", OPS)).get("keys").size()).isGreaterThanOrEqualTo(1);
    }

    @Test
    void aKeyWorksUntilItIsRevokedThenIs401() throws Exception {
        Key key = create("acme-revoke", "submit", "read");
        String task = coordinator.submit(key.key(), SEED_BODY);
        assertThat(coordinator.get("/api/v1/tasks/" + task, key.key()).statusCode()).isEqualTo(200);
        JsonNode listed = json(coordinator.get("/api/v1/keys?tenant=acme-revoke", OPS)).get("keys").get(0);
        assertThat(listed.get("last_used_at").isNull()).as("use is recorded").isFalse();

        HttpResponse<String> revoked = coordinator.send("DELETE", "/api/v1/keys/" + key.id(), OPS, null);
        assertThat(revoked.statusCode()).as(revoked.body()).isEqualTo(200);
        assertThat(json(revoked).get("revoked_at").isNull()).isFalse();
        HttpResponse<String> refused = coordinator.get("/api/v1/tasks/" + task, key.key());
        assertThat(refused.statusCode()).as("refused at once by the coordinator that revoked it").isEqualTo(401);
        assertThat(json(refused).get("error").asText()).isEqualTo("unauthorized");
        assertThat(coordinator.send("DELETE", "/api/v1/keys/" + key.id(), OPS, null).statusCode()).isEqualTo(200);
        assertThat(coordinator.send("DELETE", "/api/v1/keys/99999999", OPS, null).statusCode()).isEqualTo(404);
        assertThat(coordinator.send("DELETE", "/api/v1/keys/nope", OPS, null).statusCode()).isEqualTo(404);
    }

    @Test
    void aKeyRevokedElsewhereIsRefusedWithinTheCacheTime() throws Exception {
        Key key = create("acme-elsewhere", "read");
        assertThat(coordinator.get("/api/v1/tasks", key.key()).statusCode()).isEqualTo(200);
        // As another coordinator or the CLI would: straight in the database, this coordinator's cache untouched.
        new ApiKeyStore(coordinator.context().getBean(Database.class)).revoke(key.id());
        long revokedAt = System.nanoTime();
        await().atMost(Duration.ofSeconds(3)).pollInterval(Duration.ofMillis(50))
                .until(() -> coordinator.get("/api/v1/tasks", key.key()).statusCode() == 401);
        assertThat(Duration.ofNanos(System.nanoTime() - revokedAt)).isLessThan(Duration.ofMillis(1_000 + 500));
    }

    @Test
    void aKeyWithoutTheRoutesScopeIs403NamingIt() throws Exception {
        Key reader = create("acme-scopes", "read");
        Key submitter = create("acme-scopes", "submit");
        HttpResponse<String> submit = coordinator.send("POST", "/api/v1/tasks", reader.key(), SEED_BODY);
        assertThat(submit.statusCode()).isEqualTo(403);
        assertThat(json(submit).get("error").asText()).isEqualTo("forbidden");
        assertThat(json(submit).get("message").asText()).contains("scope 'submit'").contains("this key has: read");
        String task = coordinator.submit(submitter.key(), SEED_BODY);
        HttpResponse<String> read = coordinator.get("/api/v1/tasks/" + task, submitter.key());
        assertThat(read.statusCode()).isEqualTo(403);
        assertThat(json(read).get("message").asText()).contains("scope 'read'");
        assertThat(coordinator.get("/api/v1/tasks/" + task, reader.key()).statusCode()).isEqualTo(200);
        assertThat(coordinator.send("POST", "/api/v1/tasks/" + task + "/cancel", reader.key(), null).statusCode()).isEqualTo(403);

        for (String[] adminRoute : new String[][] {{"POST", "/api/v1/keys"}, {"GET", "/api/v1/keys"}, {"DELETE", "/api/v1/keys/1"},
                {"PUT", "/api/v1/budgets/acme-scopes"}, {"DELETE", "/api/v1/limits/demo"}}) {
            HttpResponse<String> refused = coordinator.send(adminRoute[0], adminRoute[1], reader.key(),
                    adminRoute[0].equals("GET") || adminRoute[0].equals("DELETE") ? null : "{\"tokens_per_day\": 1}");
            assertThat(refused.statusCode()).as(adminRoute[1]).isEqualTo(403);
            assertThat(json(refused).get("message").asText()).as(adminRoute[1]).contains("scope 'admin'");
        }
        assertThat(coordinator.get("/api/v1/budgets/globex", reader.key()).statusCode()).isEqualTo(403);
    }

    @Test
    void anAdminKeyManagesEveryTenantsKeysAndReadsTheirBudgets() throws Exception {
        Key platform = create("platform", "admin", "read");
        HttpResponse<String> other = coordinator.send("POST", "/api/v1/keys", platform.key(),
                "{\"tenant\": \"umbrella\", \"scopes\": [\"submit\"]}");
        assertThat(other.statusCode()).as(other.body()).isEqualTo(201);
        assertThat(json(other).get("name").asText()).isEmpty();
        assertThat(coordinator.get("/api/v1/budgets/umbrella", platform.key()).statusCode()).isEqualTo(200);
        assertThat(coordinator.send("DELETE", "/api/v1/keys/" + json(other).get("id").asLong(), platform.key(), null).statusCode())
                .isEqualTo(200);
        HttpResponse<String> noSubmit = coordinator.send("POST", "/api/v1/tasks", platform.key(), SEED_BODY);
        assertThat(noSubmit.statusCode()).as("admin does not imply submit").isEqualTo(403);
    }

    @Test
    void badKeyRequestsAre400NamingTheField() throws Exception {
        for (String[] bad : new String[][] {
                {"{\"tenant\": \"no spaces\", \"scopes\": [\"read\"]}", "tenant"},
                {"{\"scopes\": [\"read\"]}", "tenant"},
                {"{\"tenant\": 5, \"scopes\": [\"read\"]}", "tenant"},
                {"{\"tenant\": \"acme\", \"scopes\": []}", "scopes"},
                {"{\"tenant\": \"acme\"}", "scopes"},
                {"{\"tenant\": \"acme\", \"scopes\": \"read\"}", "scopes"},
                {"{\"tenant\": \"acme\", \"scopes\": [\"read\", \"root\"]}", "scopes[1]"},
                {"{\"tenant\": \"acme\", \"scopes\": [\"read\"], \"name\": \"" + "n".repeat(101) + "\"}", "name"},
                // A lone surrogate was stored as '?': the name changed without a word.
                {"{\"tenant\": \"acme\", \"scopes\": [\"read\"], \"name\": \"ci \\ud800\"}", "name"},
                {"{\"tenant\": \"acme\", \"scopes\": [\"read\"], \"digest\": \"x\"}", "digest"},
                {"[]", "body"}, {"{", "body"}}) {
            HttpResponse<String> response = coordinator.send("POST", "/api/v1/keys", OPS, bad[0]);
            assertThat(response.statusCode()).as(bad[0]).isEqualTo(400);
            assertThat(json(response).get("errors").get(0).get("field").asText()).as(bad[0]).isEqualTo(bad[1]);
        }
        assertThat(coordinator.get("/api/v1/keys?tenant=a%20b", OPS).statusCode()).isEqualTo(400);
    }

    @Test
    void aTenantNeverSeesAnotherTenantsTasksBudgetsOrReports() throws Exception {
        Key acme = create("acme-iso", "submit", "read");
        Key globex = create("globex-iso", "submit", "read");
        String task = coordinator.submit(acme.key(), SEED_BODY);
        TaskRecord record = coordinator.context().getBean(TaskStore.class).find("acme-iso", UUID.fromString(task)).orElseThrow();
        coordinator.context().getBean(TaskStore.class).recordOutcome(result(record, "demo", JobStatus.COMPLETED, "0.010000"), List.of());

        for (String path : List.of("/api/v1/tasks/" + task, "/api/v1/tasks/" + task + "/events")) {
            HttpResponse<String> response = coordinator.get(path, globex.key());
            assertThat(response.statusCode()).as(path).isEqualTo(404);
            assertThat(json(response).get("error").asText()).as(path).isEqualTo("not_found");
        }
        assertThat(coordinator.send("POST", "/api/v1/tasks/" + task + "/cancel", globex.key(), null).statusCode()).isEqualTo(404);
        assertThat(json(coordinator.get("/api/v1/tasks/" + task, acme.key())).get("status").asText())
                .as("the other tenant's cancel changed nothing").isNotEqualTo("cancelled");
        assertThat(taskIds(globex.key())).doesNotContain(task);
        assertThat(taskIds(acme.key())).contains(task);

        assertThat(json(coordinator.get("/api/v1/budgets", globex.key())).get("tenant_name").asText()).isEqualTo("globex-iso");
        assertThat(coordinator.get("/api/v1/budgets/acme-iso", globex.key()).statusCode()).isEqualTo(403);
        assertThat(json(coordinator.get("/api/v1/reports/rate-limit-failures", acme.key())).get("api_calls").asLong()).isEqualTo(1);
        assertThat(json(coordinator.get("/api/v1/reports/rate-limit-failures", globex.key())).get("api_calls").asLong()).isZero();
        assertThat(json(coordinator.get("/api/v1/reports/budget-violations", globex.key())).get("tasks").asLong()).isZero();
        assertThat(json(coordinator.get("/api/v1/dead-letters", globex.key())).get("dead_letters")).isEmpty();
    }

    private static List<String> taskIds(String key) throws Exception {
        JsonNode tasks = json(coordinator.get("/api/v1/tasks?limit=100", key)).get("tasks");
        return StreamSupport.stream(tasks.spliterator(), false).map(t -> t.get("task_id").asText()).toList();
    }
}
