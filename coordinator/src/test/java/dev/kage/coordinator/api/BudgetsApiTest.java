package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.BudgetLedger.Hold;
import dev.kage.budget.BudgetLedger.HoldRequest;
import dev.kage.budget.PeriodLimits;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code /api/v1/budgets} and the submit's budget headers against a live coordinator, with the ledger a worker
 * uses spending from the pools it shows.
 */
class BudgetsApiTest {
    private static final String ADMIN = "ops-key-12345";
    private static final String ACME = "acme-key-123";
    private static final String GLOBEX = "globex-key-123";
    private static final String UMBRELLA = "umbrella-key-123";
    private static TestCoordinator coordinator;
    private static BudgetLedger ledger;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("ops:" + ADMIN + ",acme:" + ACME + ",globex:" + GLOBEX + ",umbrella:" + UMBRELLA, Map.of("KAGE_ADMIN_TENANTS", "ops",
                "TENANT_MAX_TOKENS_PER_DAY", "10000", "TENANT_MAX_USD_PER_MONTH", "5", "BUDGET_MODE", "enforce"));
        ledger = coordinator.context().getBean(BudgetLedger.class);
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    private static Hold spend(String tenant, String job, long tokens, long usdMicros) {
        return ledger.reserve(new HoldRequest(tenant, "task-" + job, "demo", job, "test-worker", tokens, usdMicros, 50_000, 0,
                PeriodLimits.NONE, Duration.ofMinutes(5)));
    }

    @Test
    void aTenantSeesItsOwnPoolsAsTheWorkersSpendThemAndNobodyElses() throws Exception {
        Hold settled = spend("acme", "j1", 3_000, 400_000);
        ledger.settle(settled, 2_500, 350_000);
        spend("acme", "j2", 1_000, 100_000); // still running

        JsonNode acme = json(coordinator.get("/api/v1/budgets", ACME));
        assertThat(acme.get("tenant_name").asText()).isEqualTo("acme");
        assertThat(acme.get("source").asText()).isEqualTo("defaults");
        JsonNode day = acme.get("tenant").get(0);
        assertThat(day.get("period").asText()).startsWith("day:");
        assertThat(day.get("token_limit").asLong()).isEqualTo(10_000);
        assertThat(day.get("tokens_used").asLong()).isEqualTo(2_500);
        assertThat(day.get("tokens_reserved").asLong()).isEqualTo(1_000);
        assertThat(day.get("tokens_remaining").asLong()).isEqualTo(6_500);
        assertThat(day.get("usd_remaining").isNull()).as("no dollar limit per day").isTrue();
        JsonNode month = acme.get("tenant").get(1);
        assertThat(month.get("usd_limit").decimalValue()).isEqualByComparingTo("5");
        assertThat(month.get("usd_used").decimalValue()).isEqualByComparingTo("0.35");
        assertThat(month.get("usd_remaining").decimalValue()).isEqualByComparingTo("4.55");

        JsonNode globex = json(coordinator.get("/api/v1/budgets", GLOBEX));
        assertThat(globex.get("tenant").get(0).get("tokens_used").asLong()).isZero();
        assertThat(coordinator.get("/api/v1/budgets/acme", GLOBEX).statusCode()).isEqualTo(403);
        assertThat(coordinator.get("/api/v1/budgets/acme", ACME).statusCode()).isEqualTo(200);
        assertThat(json(coordinator.get("/api/v1/budgets/acme", ADMIN)).get("tenant").get(0).get("tokens_used").asLong())
                .isEqualTo(2_500);
    }

    @Test
    void anAdminSetsATenantsLimitsForTheWholeFleetAndResetsThem() throws Exception {
        HttpResponse<String> changed = put("/api/v1/budgets/initech", ADMIN, "{\"tokens_per_day\": 500, \"usd_per_day\": 1.25}");
        assertThat(changed.statusCode()).as(changed.body()).isEqualTo(200);
        assertThat(json(changed).get("source").asText()).isEqualTo("operator");
        assertThat(json(changed).get("tenant").get(0).get("token_limit").asLong()).isEqualTo(500);
        assertThat(json(changed).get("tenant").get(0).get("usd_limit").decimalValue()).isEqualByComparingTo("1.25");
        assertThat(json(changed).get("tenant").get(1).get("usd_limit").decimalValue()).as("fields left out keep their value")
                .isEqualByComparingTo("5");
        // The next reservation anywhere in the fleet applies it.
        assertThat(spend("initech", "big", 600, 0).accepted()).isFalse();
        // Only the fields given are stored: the month's dollars keep following TENANT_MAX_USD_PER_MONTH (a default
        // written here would freeze it, or, set differently on the workers, lift their limit).
        String limits = coordinator.redis().keys().tenantBudgetLimits("initech");
        assertThat(coordinator.redis().redis().hgetall(limits)).containsOnlyKeys("day_tokens", "day_usd");
        // Two admins changing different fields at once: both changes stand.
        try (var pool = java.util.concurrent.Executors.newFixedThreadPool(8)) {
            java.util.List<java.util.concurrent.Future<HttpResponse<String>>> puts = new java.util.ArrayList<>();
            for (int i = 0; i < 20; i++) {
                String body = i % 2 == 0 ? "{\"tokens_per_month\": " + (1_000_000 + i) + "}" : "{\"usd_per_month\": 7}";
                puts.add(pool.submit(() -> put("/api/v1/budgets/initech", ADMIN, body)));
            }
            for (var response : puts) {
                assertThat(response.get().statusCode()).isEqualTo(200);
            }
        }
        assertThat(coordinator.redis().redis().hgetall(limits)).containsEntry("day_tokens", "500").containsEntry("month_usd", "7000000")
                .containsKey("month_tokens");

        HttpResponse<String> reset = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/budgets/initech"))
                .header("X-API-Key", ADMIN).DELETE().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(reset.statusCode()).isEqualTo(200);
        assertThat(json(reset).get("source").asText()).isEqualTo("defaults");
        assertThat(spend("initech", "big-again", 600, 0).accepted()).isTrue();
    }

    @Test
    void aTenantThatIsNotAnAdminCannotChangeBudgetsAndBadBodiesNameTheField() throws Exception {
        HttpResponse<String> refused = put("/api/v1/budgets/acme", ACME, "{\"tokens_per_day\": 99999999}");
        assertThat(refused.statusCode()).isEqualTo(403);
        assertThat(json(refused).get("message").asText()).contains("KAGE_ADMIN_TENANTS");
        for (String[] bad : new String[][] {{"{\"tokens_per_day\": -1}", "tokens_per_day"}, {"{\"tokens_per_day\": 1.5}", "tokens_per_day"},
                {"{\"usd_per_month\": \"ten\"}", "usd_per_month"}, {"{\"daily\": 5}", "daily"}, {"[1]", "body"}, {"{", "body"},
                {"", "body"}, {"{\"tokens_per_day\": 1000, \"tokens_per_day\": 0}", "body"},
                {"{\"tokens_per_day\": 1000} {\"tokens_per_day\": 0}", "body"},
                {"{\"tokens_per_month\": 1000000000000001}", "tokens_per_month"}}) {
            HttpResponse<String> response = put("/api/v1/budgets/acme", ADMIN, bad[0]);
            assertThat(response.statusCode()).as(bad[0]).isEqualTo(400);
            assertThat(json(response).get("errors").get(0).get("field").asText()).as(bad[0]).isEqualTo(bad[1]);
        }
        assertThat(json(coordinator.get("/api/v1/budgets", ACME)).get("source").asText()).isEqualTo("defaults");
    }

    @Test
    void aSubmitAnswersWithWhatIsLeftOfTheTenantsPools() throws Exception {
        ledger.settle(spend("umbrella", "before", 1_000, 0), 1_200, 250_000);
        HttpResponse<String> response = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/tasks"))
                .header("X-API-Key", UMBRELLA).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("{\"description\": \"x\", \"cli_assignments\": [{\"cli_name\": \"demo\"}],"
                        + " \"budget\": {\"max_tokens\": 7000}}")).build(), HttpResponse.BodyHandlers.ofString());
        assertThat(response.statusCode()).as(response.body()).isEqualTo(202);
        assertThat(response.headers().firstValue("X-Budget-Task-Tokens")).contains("7000");
        assertThat(response.headers().firstValue("X-Budget-Remaining-Tokens-Day")).contains("8800");
        assertThat(response.headers().firstValue("X-Budget-Remaining-Usd-Month")).contains("4.750000");
        assertThat(response.headers().firstValue("X-Budget-Remaining-Tokens-Month")).as("no monthly token limit").isEmpty();
        String taskId = json(response).get("task_id").asText();
        JsonNode budget = json(coordinator.get("/api/v1/tasks/" + taskId, UMBRELLA)).get("budget");
        assertThat(budget.get("token_limit").asLong()).isEqualTo(7_000);
        assertThat(budget.get("mode").asText()).isEqualTo("enforce");
        assertThat(budget.get("usd_used").decimalValue()).isZero();
    }

    @Test
    void theCoordinatorShowsTheDefaultsTheWorkersApplyNotItsOwnConfiguration() throws Exception {
        try (TestCoordinator own = new TestCoordinator("acme:" + ACME, Map.of("TENANT_MAX_TOKENS_PER_DAY", "10000",
                "BUDGET_MODE", "enforce"))) {
            // A worker started with other defaults, and a budget for the demo agent the coordinator's agents.yml lacks.
            new dev.kage.budget.FleetBudgetDefaults(own.redis().keys(), own.redis().redis(), new PeriodLimits(20_000, 0, 0, 0),
                    Duration.ZERO).publish(Map.of("demo", new PeriodLimits(0, 0, 3_000_000, 0)));
            JsonNode budgets = json(own.get("/api/v1/budgets", ACME));
            assertThat(budgets.get("tenant").get(0).get("token_limit").asLong()).isEqualTo(20_000);
            assertThat(budgets.get("agents")).hasSize(2);
            assertThat(budgets.get("agents").get(1).get("owner").asText()).isEqualTo("demo");
            assertThat(budgets.get("agents").get(1).get("token_limit").asLong()).isEqualTo(3_000_000);
            HttpResponse<String> submitted = own.http().send(HttpRequest.newBuilder(own.uri("/api/v1/tasks"))
                    .header("X-API-Key", ACME).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"description\": \"x\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}"))
                    .build(), HttpResponse.BodyHandlers.ofString());
            assertThat(submitted.headers().firstValue("X-Budget-Remaining-Tokens-Day")).contains("20000");
        }
    }

    @Test
    void aTenantsLimitsOutliveARedisThatLostThemAndCrossingChangesLeaveBothCopiesAlike() throws Exception {
        // Kept only in Redis, an operator's limits were gone with a Redis that lost its data: the tenant fell back to
        // TENANT_MAX_* (often no limit at all) and ran uncapped.
        dev.kage.store.TenantBudgetLimitStore stored = coordinator.context().getBean(dev.kage.store.TenantBudgetLimitStore.class);
        dev.kage.coordinator.task.Reconciler reconciler = coordinator.context().getBean(dev.kage.coordinator.task.Reconciler.class);
        var redis = coordinator.redis().redis();
        String key = coordinator.redis().keys().tenantBudgetLimits("hooli");
        assertThat(put("/api/v1/budgets/hooli", ADMIN, "{\"usd_per_day\": 25, \"tokens_per_month\": 900}").statusCode()).isEqualTo(200);
        assertThat(stored.all()).containsEntry("hooli", Map.of(BudgetLedger.DAY_USD, 25_000_000L, BudgetLedger.MONTH_TOKENS, 900L));
        redis.del(key); // what a Redis that lost its data has of them
        assertThat(json(coordinator.get("/api/v1/budgets/hooli", ADMIN)).get("source").asText()).isEqualTo("defaults");

        assertThat(reconciler.reapplyTenantBudgetLimits()).isEqualTo(1);
        assertThat(reconciler.reapplyTenantBudgetLimits()).as("Redis has them now").isZero();
        assertThat(redis.hgetall(key)).isEqualTo(Map.of("day_usd", "25000000", "month_tokens", "900"));
        assertThat(json(coordinator.get("/api/v1/budgets/hooli", ADMIN)).get("source").asText()).isEqualTo("operator");
        assertThat(spend("hooli", "over", 1000, 0).accepted()).as("the month's 900 tokens apply again").isFalse();
        // A Redis restarted from an older snapshot holds older limits: made as the row says, field for field.
        redis.hset(key, Map.of("day_usd", "99000000", "day_tokens", "5"));
        assertThat(reconciler.reapplyTenantBudgetLimits()).isEqualTo(1);
        assertThat(redis.hgetall(key)).isEqualTo(Map.of("day_usd", "25000000", "month_tokens", "900"));

        // PUTs, DELETEs and the reconciler's restoring (of a Redis that keeps losing them) crossing each other: each
        // change writes Postgres then Redis under the tenant's lock, so the two copies end alike.
        for (int round = 0; round < 10; round++) {
            try (var pool = java.util.concurrent.Executors.newFixedThreadPool(6)) {
                java.util.List<java.util.concurrent.Future<?>> work = new java.util.ArrayList<>();
                for (int i = 0; i < 12; i++) {
                    int n = i;
                    work.add(pool.submit(() -> {
                        switch (n % 3) {
                            case 0 -> assertThat(coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/budgets/hooli"))
                                    .header("X-API-Key", ADMIN).DELETE().build(), HttpResponse.BodyHandlers.ofString()).statusCode()).isEqualTo(200);
                            case 1 -> assertThat(put("/api/v1/budgets/hooli", ADMIN, "{\"tokens_per_day\": " + (1000 + n) + "}")
                                    .statusCode()).isEqualTo(200);
                            default -> {
                                redis.del(key);
                                reconciler.reapplyTenantBudgetLimits();
                            }
                        }
                        return null;
                    }));
                }
                for (var done : work) {
                    done.get(60, java.util.concurrent.TimeUnit.SECONDS);
                }
            }
            // A deletion by the last restorer may leave Redis without them until the next pass: that pass restores them.
            reconciler.reapplyTenantBudgetLimits();
            Map<String, String> inPostgres = new java.util.HashMap<>();
            stored.all().getOrDefault("hooli", Map.of()).forEach((field, value) -> inPostgres.put(field, Long.toString(value)));
            assertThat(redis.hgetall(key)).as("round " + round).isEqualTo(inPostgres);
        }
    }

    private static HttpResponse<String> put(String path, String key, String body) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).header("X-API-Key", key)
                .header("Content-Type", "application/json").PUT(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }
}
