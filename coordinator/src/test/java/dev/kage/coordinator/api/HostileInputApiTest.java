package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.http.HttpResponse;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * What the chaos suite's hostile-input corpus (e2e {@code HostileInputChaosIT}) found, kept fixed: every refusal is an
 * {@link ErrorBody} naming the problem, a number too large is a 400 and not a 500, a tenant name no tenant can have
 * never reaches the budget ledger, a {@code since} past Postgres's range is a 400 and not a false 503, and text that
 * is not valid Unicode (lone surrogates) or has nothing visible is refused rather than stored changed.
 */
class HostileInputApiTest {
    private static final String KEY = "acme-key-123";
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123", Map.of("KAGE_ADMIN_TENANTS", "acme"));
    }

    @AfterAll
    static void stop() throws Exception {
        coordinator.close();
    }

    @Test
    void whatTheFrameworkRefusesByItselfIsAnErrorBodyToo() throws Exception {
        JsonNode unknownRoute = error(coordinator.get("/api/v1/nope", KEY), 404);
        assertThat(unknownRoute.get("error").asText()).isEqualTo("not_found");
        assertThat(unknownRoute.get("message").asText()).contains("GET /api/v1/nope");

        JsonNode wrongMethod = error(coordinator.send("PATCH", "/api/v1/tasks", KEY, "{}"), 405);
        assertThat(wrongMethod.get("error").asText()).isEqualTo("method_not_allowed");
        assertThat(wrongMethod.get("message").asText()).contains("PATCH");

        JsonNode badLimit = error(coordinator.get("/api/v1/dead-letters?limit=abc", KEY), 400);
        assertThat(badLimit.get("error").asText()).isEqualTo("validation_failed");
        assertThat(badLimit.at("/errors/0/field").asText()).isEqualTo("limit");
        // Out of range: refused, not clamped (0 answered one letter, 100000 five hundred, as if asked for).
        for (String limit : new String[] {"0", "-5", "501", "100000"}) {
            JsonNode outOfRange = error(coordinator.get("/api/v1/dead-letters?limit=" + limit, KEY), 400);
            assertThat(outOfRange.at("/errors/0/message").asText()).as(limit).isEqualTo("must be a whole number from 1 to 500 (default 50)");
        }
        assertThat(coordinator.get("/api/v1/dead-letters?limit=500", KEY).statusCode()).isEqualTo(200);
    }

    @Test
    void anEmptySubmitBodyIsNamedByTheParser() throws Exception {
        for (String path : new String[] {"/api/v1/tasks", "/api/v1/tasks:batch"}) {
            JsonNode body = error(coordinator.send("POST", path, KEY, ""), 400);
            assertThat(body.at("/errors/0/field").asText()).isIn("body", "tasks");
        }
    }

    @Test
    void aNumberBeyondADoubleIsA400NotA500() throws Exception {
        JsonNode body = error(coordinator.send("PUT", "/api/v1/budgets/acme", KEY, "{\"usd_per_month\": 1e400}"), 400);
        assertThat(body.at("/errors/0/field").asText()).isEqualTo("usd_per_month");
        JsonNode limits = error(coordinator.send("PUT", "/api/v1/limits/claude-code", KEY, "{\"window_seconds\": 1e400}"), 400);
        assertThat(limits.at("/errors/0/field").asText()).isEqualTo("window_seconds");
    }

    @Test
    void aSingleValuedHeaderSentTwiceIsA400NamingItAndNothingIsCreated() throws Exception {
        // Which of two keys guarded a submit was the framework's choice; a resume point likewise.
        String task = "{\"description\": \"twice\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
        Map<String, String> requests = Map.of("/api/v1/tasks", task, "/api/v1/tasks:batch", "{\"tasks\": [" + task + "]}");
        for (var entry : requests.entrySet()) {
            java.net.http.HttpRequest request = java.net.http.HttpRequest.newBuilder(coordinator.uri(entry.getKey()))
                    .header("X-API-Key", KEY).header("Content-Type", "application/json")
                    .header("Idempotency-Key", "import-1").header("Idempotency-Key", "import-2")
                    .POST(java.net.http.HttpRequest.BodyPublishers.ofString(entry.getValue())).build();
            JsonNode body = error(coordinator.http().send(request, HttpResponse.BodyHandlers.ofString()), 400);
            assertThat(body.at("/errors/0/field").asText()).isEqualTo("Idempotency-Key");
            assertThat(body.at("/errors/0/message").asText()).isEqualTo("was sent 2 times; send it once");
        }
        String listed = coordinator.get("/api/v1/tasks?limit=100", KEY).body();
        assertThat(listed).doesNotContain("\"twice\"");
        java.net.http.HttpRequest events = java.net.http.HttpRequest.newBuilder(coordinator.uri("/api/v1/events"))
                .header("X-API-Key", KEY).header("Last-Event-ID", "1-0").header("Last-Event-ID", "2-0").GET().build();
        JsonNode refused = error(coordinator.http().send(events, HttpResponse.BodyHandlers.ofString()), 400);
        assertThat(refused.at("/errors/0/field").asText()).isEqualTo("Last-Event-ID");
    }

    @Test
    void aDollarAmountFarBelowAMicroDollarIsRoundedUpAtOnceNotA500() throws Exception {
        // Rounding 1e-900000000 itself built 10^900000000 (an ArithmeticException: a 500; a little above, minutes of CPU).
        for (String tiny : new String[] {"1e-900000000", "1e-500000000", "1e-7"}) {
            var response = coordinator.send("PUT", "/api/v1/budgets/acme", KEY, "{\"usd_per_day\": " + tiny + "}");
            assertThat(response.statusCode()).as(tiny + ": " + response.body()).isEqualTo(200);
            JsonNode day = null;
            for (JsonNode pool : TestCoordinator.json(response).get("tenant")) {
                if (pool.get("period").asText().startsWith("day:")) {
                    day = pool;
                }
            }
            assertThat(day).as(response.body()).isNotNull();
            assertThat(day.get("usd_limit").decimalValue()).as(tiny).isEqualByComparingTo("0.000001");
        }
        coordinator.send("DELETE", "/api/v1/budgets/acme", KEY, "");
    }

    @Test
    void aWholeNumberBeyond64BitsIsA400NotItsLowBits() throws Exception {
        // 2^64 + 5 kept only its low bits (a limit of 5 tokens a day); 1e100 became 0, "no limit".
        for (String value : new String[] {"18446744073709551621", "1e100", "-18446744073709551611"}) {
            JsonNode body = error(coordinator.send("PUT", "/api/v1/budgets/acme", KEY, "{\"tokens_per_day\": " + value + "}"), 400);
            assertThat(body.at("/errors/0/field").asText()).as(value).isEqualTo("tokens_per_day");
        }
    }

    @Test
    void aTenantNameNoTenantCanHaveIsRefusedOnEveryBudgetRoute() throws Exception {
        for (String tenant : new String[] {"..%2F..%2Fetc", "a%20b", "a:b"}) {
            assertThat(error(coordinator.send("PUT", "/api/v1/budgets/" + tenant, KEY, "{\"tokens_per_day\": 5}"), 400)
                    .at("/errors/0/field").asText()).isEqualTo("tenant");
            assertThat(error(coordinator.get("/api/v1/budgets/" + tenant, KEY), 400).at("/errors/0/field").asText())
                    .isEqualTo("tenant");
            assertThat(error(coordinator.send("DELETE", "/api/v1/budgets/" + tenant, KEY, null), 400).at("/errors/0/field")
                    .asText()).isEqualTo("tenant");
        }
        assertThat(coordinator.redis().redis().keys(coordinator.redis().namespace() + "*a:b*")).isEmpty();
    }

    @Test
    void aSinceBeyondWhatPostgresStoresIsA400NotA503() throws Exception {
        for (String since : new String[] {"%2B999999999-12-31T23:59:59Z", "-999999999-01-01T00:00:00Z", "0000-01-01T00:00:00Z"}) {
            assertThat(error(coordinator.get("/api/v1/tasks?since=" + since, KEY), 400).at("/errors/0/field").asText())
                    .isEqualTo("since");
        }
        assertThat(coordinator.get("/api/v1/tasks?since=0001-01-01T00:00:00Z", KEY).statusCode()).isEqualTo(200);
    }

    @Test
    void textThatIsNotValidUnicodeOrHasNothingVisibleIsRefusedNotStoredChanged() throws Exception {
        String assignments = "\"cli_assignments\": [{\"cli_name\": \"claude-code\"}]";
        Map<String, String> cases = Map.of(
                "{\"description\": \"lone \\ud800 high\", " + assignments + "}", "description",
                "{\"description\": \"\\ude00\\ud83d reversed\", " + assignments + "}", "description",
                "{\"description\": \"ends \\ud83d\", " + assignments + "}", "description",
                "{\"description\": \"\\u200b\\u200c\\ufeff\", " + assignments + "}", "description",
                "{\"description\": \"ok\", \"repo\": \"/tmp/\\udc00\", " + assignments + "}", "repo",
                "{\"description\": \"ok\", \"metadata\": {\"k\": \"\\ud800\"}, " + assignments + "}", "metadata");
        for (Map.Entry<String, String> c : cases.entrySet()) {
            JsonNode body = error(coordinator.send("POST", "/api/v1/tasks", KEY, c.getKey()), 400);
            assertThat(body.at("/errors/0/field").asText()).as(c.getKey()).isEqualTo(c.getValue());
        }
        // A real pair (an emoji) and visible text around invisible marks are fine.
        HttpResponse<String> emoji = coordinator.send("POST", "/api/v1/tasks", KEY,
                "{\"description\": \"\\ud83d\\ude42 fix \\u200bit\", " + assignments + "}");
        assertThat(emoji.statusCode()).as(emoji.body()).isEqualTo(202);
    }

    private static JsonNode error(HttpResponse<String> response, int status) throws Exception {
        assertThat(response.statusCode()).as(response.body()).isEqualTo(status);
        JsonNode body = TestCoordinator.json(response);
        assertThat(body.get("error").isTextual()).as(response.body()).isTrue();
        assertThat(body.get("message").asText()).as(response.body()).isNotBlank();
        assertThat(body.get("errors").isArray()).as(response.body()).isTrue();
        return body;
    }
}
