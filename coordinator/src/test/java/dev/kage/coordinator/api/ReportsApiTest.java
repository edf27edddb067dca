package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static dev.kage.store.StoreTestData.budgetViolation;
import static dev.kage.store.StoreTestData.rateLimited;
import static dev.kage.store.StoreTestData.result;
import static dev.kage.store.StoreTestData.task;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobStatus;
import dev.kage.task.TaskRecord;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import java.math.BigDecimal;
import java.net.URI;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code GET /api/v1/reports/*} against a live coordinator with real Redis and Postgres. Tenants {@code acme},
 * {@code globex} and {@code calm} get a fixed data set once; each figure asserted below is worked out by hand in
 * the comments of {@link #seed()}.
 */
class ReportsApiTest {
    private static final String ACME = "acme-key-123";
    private static final String GLOBEX = "globex-key-456";
    private static final String CALM = "calm-key-789";
    private static final String EMPTY = "empty-key-5678";
    private static final String CLAUDE = "claude-code";
    private static final String DEMO = "demo";

    private static TestCoordinator coordinator;
    private static TaskRecord anomaly;
    private static TaskRecord oldAnomaly;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:" + ACME + ",globex:" + GLOBEX + ",calm:" + CALM + ",empty:" + EMPTY);
        seed();
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    /**
     * acme, in the last 30 days: 8 tasks with results (12 runs: 8 demo, 4 claude-code). Budget violations on t1 (now)
     * and t2 (3 days ago). claude-code on t3 hit 429 twice, then gave up (final); demo on t5 hit one 429 that was
     * retried. demo costs 0.01 except t6 at 0.80. Plus t9, 40 days old: one demo run costing 0.90, a violation and a
     * final 429.
     *
     * <p>demo's average over all 9 acme runs = (7 × 0.01 + 0.80 + 0.90) / 9 = 0.196667, so 3 × average = 0.59:
     * t6 (ratio 4.07) and t9 (ratio 4.58, outside 30 days) are anomalies. claude-code's average is 0.105, its
     * dearest run 0.12: none.
     *
     * <p>globex: 2 tasks, demo 5.00 each and claude-code 0.001 each; a violation on g1; a final 429 on each
     * claude-code run. Mixed into acme's figures it would change every one of them (and mixed averages would
     * flag globex's 5.00 runs and unflag acme's t6).
     *
     * <p>calm: one task, one run, no errors.
     */
    private static void seed() {
        TaskStore store = coordinator.context().getBean(TaskStore.class);
        TaskRecord[] t = new TaskRecord[10];
        for (int i = 1; i <= 9; i++) {
            t[i] = task("acme", CLAUDE, DEMO);
            store.insert(t[i]);
        }
        for (int i = 1; i <= 8; i++) {
            store.recordOutcome(result(t[i], DEMO, JobStatus.COMPLETED, i == 6 ? "0.800000" : "0.010000"), List.of());
        }
        store.recordOutcome(result(t[1], CLAUDE, JobStatus.COMPLETED, "0.100000"), List.of(budgetViolation(t[1], CLAUDE)));
        store.recordOutcome(result(t[2], CLAUDE, JobStatus.COMPLETED, "0.100000"), List.of());
        store.insertErrors(List.of(budgetViolation(t[2], DEMO)));
        store.insertErrors(List.of(rateLimited(t[3], CLAUDE, 1, false), rateLimited(t[3], CLAUDE, 2, false)));
        store.recordOutcome(result(t[3], CLAUDE, JobStatus.FAILED, "0.100000"), List.of(rateLimited(t[3], CLAUDE, 3, true)));
        store.recordOutcome(result(t[4], CLAUDE, JobStatus.COMPLETED, "0.120000"), List.of());
        store.insertErrors(List.of(rateLimited(t[5], DEMO, 1, false)));
        store.recordOutcome(result(t[9], DEMO, JobStatus.FAILED, "0.900000"),
                List.of(budgetViolation(t[9], DEMO), rateLimited(t[9], DEMO, 1, true)));
        anomaly = t[6];
        oldAnomaly = t[9];
        age("task_errors", "occurred_at", t[2], 3);
        age("execution_results", "created_at", t[9], 40);
        age("task_errors", "occurred_at", t[9], 40);

        for (int i = 1; i <= 2; i++) {
            TaskRecord g = task("globex", CLAUDE, DEMO);
            store.insert(g);
            store.recordOutcome(result(g, DEMO, JobStatus.COMPLETED, "5.000000"), List.of());
            List<ErrorRecord> errors = i == 1 ? List.of(budgetViolation(g, CLAUDE), rateLimited(g, CLAUDE, 1, true))
                    : List.of(rateLimited(g, CLAUDE, 1, true));
            store.recordOutcome(result(g, CLAUDE, JobStatus.FAILED, "0.001000"), errors);
        }

        TaskRecord c = task("calm", DEMO);
        store.insert(c);
        store.recordOutcome(result(c, DEMO, JobStatus.COMPLETED, "0.020000"), List.of());
    }

    @Test
    void budgetViolationRateCountsTheCallersTasksWithResultsInTheWindow() throws Exception {
        JsonNode acme = ok("/api/v1/reports/budget-violations", ACME);
        assertWindow(acme, 30);
        assertThat(acme.get("tasks").asLong()).isEqualTo(8);
        assertThat(acme.get("tasks_with_violations").asLong()).isEqualTo(2);
        assertThat(acme.get("violations").asLong()).isEqualTo(2);
        assertThat(acme.get("violations_last_24h").asLong()).isEqualTo(1);
        assertDecimal(acme, "budget_violation_pct", "25.00");
        assertDecimal(acme, "target_pct", "5");
        assertThat(acme.get("met").asBoolean()).isFalse();

        JsonNode sixty = ok("/api/v1/reports/budget-violations?days=60", ACME);
        assertWindow(sixty, 60);
        assertThat(sixty.get("tasks").asLong()).isEqualTo(9);
        assertThat(sixty.get("tasks_with_violations").asLong()).isEqualTo(3);
        assertThat(sixty.get("violations").asLong()).isEqualTo(3);
        assertDecimal(sixty, "budget_violation_pct", "33.33");

        // As in the seed's query, a task with a result in the window counts as violating whenever its violation was.
        JsonNode oneDay = ok("/api/v1/reports/budget-violations?days=1", ACME);
        assertThat(oneDay.get("tasks").asLong()).isEqualTo(8);
        assertThat(oneDay.get("tasks_with_violations").asLong()).isEqualTo(2);
        assertThat(oneDay.get("violations").asLong()).as("t2's violation was 3 days ago").isEqualTo(1);
        assertDecimal(oneDay, "budget_violation_pct", "25.00");
    }

    @Test
    void aTenantSeesOnlyItsOwnBudgetFigures() throws Exception {
        JsonNode globex = ok("/api/v1/reports/budget-violations", GLOBEX);
        assertThat(globex.get("tasks").asLong()).isEqualTo(2);
        assertThat(globex.get("tasks_with_violations").asLong()).isEqualTo(1);
        assertThat(globex.get("violations").asLong()).isEqualTo(1);
        assertThat(globex.get("violations_last_24h").asLong()).isEqualTo(1);
        assertDecimal(globex, "budget_violation_pct", "50.00");

        JsonNode calm = ok("/api/v1/reports/budget-violations", CALM);
        assertThat(calm.get("tasks").asLong()).isEqualTo(1);
        assertDecimal(calm, "budget_violation_pct", "0.00");
        assertThat(calm.get("met").asBoolean()).isTrue();

        JsonNode empty = ok("/api/v1/reports/budget-violations", EMPTY);
        assertThat(empty.get("tasks").asLong()).isZero();
        assertThat(empty.get("violations").asLong()).isZero();
        assertThat(empty.get("budget_violation_pct").isNull()).as("no tasks, no rate").isTrue();
        assertThat(empty.get("met").isNull()).isTrue();
    }

    @Test
    void rateLimitFailuresCountOnlyFinal429sAgainstRunsPerAgent() throws Exception {
        JsonNode acme = ok("/api/v1/reports/rate-limit-failures", ACME);
        assertWindow(acme, 30);
        assertThat(acme.get("api_calls").asLong()).isEqualTo(12);
        assertThat(acme.get("rate_limit_failures").asLong()).isEqualTo(1);
        assertThat(acme.get("rate_limited_retries").asLong()).isEqualTo(3);
        assertDecimal(acme, "rate_limit_failure_pct", "8.33");
        assertDecimal(acme, "target_pct", "1");
        assertThat(acme.get("met").asBoolean()).isFalse();
        assertThat(agents(acme)).containsExactly(CLAUDE, DEMO);
        JsonNode claude = acme.get("agents").get(0);
        assertThat(claude.get("api_calls").asLong()).isEqualTo(4);
        assertThat(claude.get("rate_limit_failures").asLong()).isEqualTo(1);
        assertThat(claude.get("rate_limited_retries").asLong()).isEqualTo(2);
        assertDecimal(claude, "rate_limit_failure_pct", "25.00");
        JsonNode demo = acme.get("agents").get(1);
        assertThat(demo.get("api_calls").asLong()).isEqualTo(8);
        assertThat(demo.get("rate_limit_failures").asLong()).isZero();
        assertThat(demo.get("rate_limited_retries").asLong()).isEqualTo(1);
        assertDecimal(demo, "rate_limit_failure_pct", "0.00");

        JsonNode sixty = ok("/api/v1/reports/rate-limit-failures?days=60", ACME);
        assertThat(sixty.get("api_calls").asLong()).isEqualTo(13);
        assertThat(sixty.get("rate_limit_failures").asLong()).isEqualTo(2);
        assertThat(sixty.get("rate_limited_retries").asLong()).isEqualTo(3);
        assertDecimal(sixty, "rate_limit_failure_pct", "15.38");
        assertDecimal(sixty.get("agents").get(1), "rate_limit_failure_pct", "11.11");
    }

    @Test
    void aTenantSeesOnlyItsOwnRateLimitFigures() throws Exception {
        JsonNode globex = ok("/api/v1/reports/rate-limit-failures", GLOBEX);
        assertThat(globex.get("api_calls").asLong()).isEqualTo(4);
        assertThat(globex.get("rate_limit_failures").asLong()).isEqualTo(2);
        assertThat(globex.get("rate_limited_retries").asLong()).isZero();
        assertDecimal(globex, "rate_limit_failure_pct", "50.00");
        assertThat(agents(globex)).containsExactly(CLAUDE, DEMO);
        assertDecimal(globex.get("agents").get(0), "rate_limit_failure_pct", "100.00");

        JsonNode calm = ok("/api/v1/reports/rate-limit-failures", CALM);
        assertThat(calm.get("api_calls").asLong()).isEqualTo(1);
        assertThat(calm.get("met").asBoolean()).isTrue();

        JsonNode empty = ok("/api/v1/reports/rate-limit-failures", EMPTY);
        assertThat(empty.get("api_calls").asLong()).isZero();
        assertThat(empty.get("rate_limit_failure_pct").isNull()).isTrue();
        assertThat(empty.get("met").isNull()).isTrue();
        assertThat(empty.get("agents")).isEmpty();
    }

    @Test
    void costAnomaliesAreRunsOverThreeTimesTheirAgentsAverageWithinTheTenant() throws Exception {
        JsonNode acme = ok("/api/v1/reports/cost-anomalies", ACME);
        assertWindow(acme, 30);
        assertDecimal(acme, "factor", "3");
        assertThat(acme.get("limit").asInt()).isEqualTo(50);
        assertThat(acme.get("total").asLong()).isEqualTo(1);
        assertThat(acme.get("anomalies")).hasSize(1);
        JsonNode row = acme.get("anomalies").get(0);
        assertThat(row.get("task_id").asText()).isEqualTo(anomaly.id().toString());
        assertThat(row.get("cli_name").asText()).isEqualTo(DEMO);
        assertThat(row.get("attempt").asInt()).isEqualTo(1);
        assertThat(row.get("job_id").asText()).isNotBlank();
        assertDecimal(row, "cost", "0.80");
        assertDecimal(row, "agent_avg_cost", "0.196667");
        assertDecimal(row, "ratio", "4.07");
        assertThat(Instant.parse(row.get("created_at").asText())).isAfter(Instant.now().minus(Duration.ofHours(1)));

        JsonNode sixty = ok("/api/v1/reports/cost-anomalies?days=60", ACME);
        assertThat(sixty.get("total").asLong()).isEqualTo(2);
        assertThat(taskIds(sixty)).as("dearest first").containsExactly(oldAnomaly.id().toString(), anomaly.id().toString());
        assertDecimal(sixty.get("anomalies").get(0), "ratio", "4.58");

        JsonNode limited = ok("/api/v1/reports/cost-anomalies?days=60&limit=1", ACME);
        assertThat(limited.get("limit").asInt()).isEqualTo(1);
        assertThat(limited.get("total").asLong()).as("counts past the limit").isEqualTo(2);
        assertThat(taskIds(limited)).containsExactly(oldAnomaly.id().toString());
    }

    @Test
    void anotherTenantsCostsNeitherShowNorMoveTheAverages() throws Exception {
        JsonNode globex = ok("/api/v1/reports/cost-anomalies?days=366", GLOBEX);
        assertThat(globex.get("total").asLong()).isZero();
        assertThat(globex.get("anomalies")).isEmpty();
        assertThat(ok("/api/v1/reports/cost-anomalies", EMPTY).get("anomalies")).isEmpty();
    }

    @Test
    void badDaysOrLimitIs400NamingTheParameter() throws Exception {
        for (String report : List.of("budget-violations", "rate-limit-failures", "cost-anomalies")) {
            String path = "/api/v1/reports/" + report;
            assertBad(coordinator.get(path + "?days=0", EMPTY), "days", "from 1 to 366");
            assertBad(coordinator.get(path + "?days=367", EMPTY), "days", "from 1 to 366");
            assertBad(coordinator.get(path + "?days=week", EMPTY), "days", "'week'");
            assertBad(coordinator.get(path + "?days=", EMPTY), "days", "from 1 to 366");
            assertBad(coordinator.get(path + "?days=1&days=2", EMPTY), "days", "give it once");
        }
        String anomalies = "/api/v1/reports/cost-anomalies";
        assertBad(coordinator.get(anomalies + "?limit=0", EMPTY), "limit", "from 1 to 500");
        assertBad(coordinator.get(anomalies + "?limit=501", EMPTY), "limit", "from 1 to 500");
        assertBad(coordinator.get(anomalies + "?limit=many", EMPTY), "limit", "from 1 to 500");

        HttpResponse<String> both = coordinator.get(anomalies + "?days=-1&limit=9999", EMPTY);
        assertThat(both.statusCode()).isEqualTo(400);
        assertThat(StreamSupport.stream(json(both).get("errors").spliterator(), false).map(e -> e.get("field").asText()))
                .containsExactlyInAnyOrder("days", "limit");

        assertThat(coordinator.get(anomalies + "?days=366&limit=500", EMPTY).statusCode()).isEqualTo(200);
        assertThat(coordinator.get(anomalies + "?days=1&limit=1", EMPTY).statusCode()).isEqualTo(200);

        // A misspelt or unread parameter is refused, named: it answered for the default window as if it had been read.
        assertBad(coordinator.get("/api/v1/reports/budget-violations?day=7", EMPTY), "day", "it takes days");
        assertBad(coordinator.get("/api/v1/reports/budget-violations?limit=0", EMPTY), "limit", "it takes days");
        assertBad(coordinator.get(anomalies + "?limt=5", EMPTY), "limt", "it takes days, limit");
        assertBad(coordinator.get("/api/v1/reports/recent-errors?days=7", EMPTY), "days", "it takes limit");
    }

    @Test
    void recentErrorsAreTheCallersNewestErrorRows() throws Exception {
        JsonNode all = ok("/api/v1/reports/recent-errors?limit=200", ACME).get("errors");
        assertThat(all).hasSize(8); // t1, t2, 3 × t3, t5, 2 × t9
        java.util.Set<String> acmeTasks = java.util.stream.IntStream.range(0, all.size())
                .mapToObj(i -> all.get(i).get("task_id").asText()).collect(java.util.stream.Collectors.toSet());
        List<java.time.Instant> times = StreamSupport.stream(all.spliterator(), false)
                .map(e -> java.time.Instant.parse(e.get("occurred_at").asText())).toList();
        assertThat(times).isSortedAccordingTo(java.util.Comparator.reverseOrder());
        assertThat(all.get(all.size() - 1).get("task_id").asText()).isEqualTo(oldAnomaly.id().toString());
        assertThat(all.get(0).fieldNames()).toIterable().containsExactlyInAnyOrder("id", "task_id", "job_id", "cli_name",
                "error_type", "error_message", "retryable", "occurred_at");

        JsonNode newest = ok("/api/v1/reports/recent-errors?limit=3", ACME).get("errors");
        assertThat(newest).hasSize(3);
        assertThat(newest.get(0).get("id").asLong()).isEqualTo(all.get(0).get("id").asLong());
        assertThat(ok("/api/v1/reports/recent-errors", ACME).get("errors")).hasSize(8); // default 20

        JsonNode globex = ok("/api/v1/reports/recent-errors", GLOBEX).get("errors");
        assertThat(globex).hasSize(3);
        globex.forEach(e -> assertThat(acmeTasks).doesNotContain(e.get("task_id").asText()));
        assertThat(ok("/api/v1/reports/recent-errors", CALM).get("errors")).isEmpty();

        assertBad(coordinator.get("/api/v1/reports/recent-errors?limit=0", EMPTY), "limit", "from 1 to 200");
        assertBad(coordinator.get("/api/v1/reports/recent-errors?limit=201", EMPTY), "limit", "from 1 to 200");
    }

    @Test
    void reportsNeedAnApiKey() throws Exception {
        for (String report : List.of("budget-violations", "rate-limit-failures", "cost-anomalies")) {
            assertThat(coordinator.get("/api/v1/reports/" + report, "no-such-key").statusCode()).isEqualTo(401);
        }
    }

    @Test
    void withPostgresDownReportsAnswer503() throws Exception {
        URI db = URI.create(TestServices.databaseUrl());
        try (TcpProxy proxy = TcpProxy.start(db.getHost(), db.getPort() > 0 ? db.getPort() : 5432);
             TestCoordinator cut = new TestCoordinator("acme:" + ACME,
                     Map.of("DATABASE_URL", TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy)))) {
            assertThat(cut.get("/api/v1/reports/budget-violations", ACME).statusCode()).isEqualTo(200);
            proxy.cut();
            for (String report : List.of("budget-violations", "rate-limit-failures", "cost-anomalies")) {
                HttpResponse<String> response = cut.get("/api/v1/reports/" + report, ACME);
                assertThat(response.statusCode()).as(response.body()).isEqualTo(503);
                assertThat(json(response).get("error").asText()).isEqualTo("database_unavailable");
                assertThat(response.headers().firstValue("Retry-After")).isPresent();
            }
            proxy.restore();
        }
    }

    private static JsonNode ok(String path, String key) throws Exception {
        HttpResponse<String> response = coordinator.get(path, key);
        assertThat(response.statusCode()).as(response.body()).isEqualTo(200);
        assertThat(response.headers().firstValue("Content-Type")).hasValueSatisfying(t -> assertThat(t).startsWith("application/json"));
        return json(response);
    }

    private static void assertWindow(JsonNode report, int days) {
        JsonNode window = report.get("window");
        assertThat(window.get("days").asInt()).isEqualTo(days);
        Instant from = Instant.parse(window.get("from").asText());
        Instant to = Instant.parse(window.get("to").asText());
        assertThat(Duration.between(from, to)).isEqualTo(Duration.ofDays(days));
        assertThat(to).isBetween(Instant.now().minus(Duration.ofMinutes(5)), Instant.now().plus(Duration.ofMinutes(5)));
    }

    private static void assertDecimal(JsonNode node, String field, String expected) {
        assertThat(node.has(field)).as("%s in %s", field, node).isTrue();
        assertThat(node.get(field).isNumber()).as("%s in %s", field, node).isTrue();
        assertThat(node.get(field).decimalValue()).as("%s in %s", field, node).isEqualByComparingTo(new BigDecimal(expected));
    }

    private static void assertBad(HttpResponse<String> response, String field, String messagePart) throws Exception {
        assertThat(response.statusCode()).as(response.body()).isEqualTo(400);
        JsonNode body = json(response);
        assertThat(body.get("error").asText()).isEqualTo("validation_failed");
        assertThat(body.get("errors")).hasSize(1);
        assertThat(body.get("errors").get(0).get("field").asText()).isEqualTo(field);
        assertThat(body.get("errors").get(0).get("message").asText()).contains(messagePart);
    }

    private static List<String> agents(JsonNode report) {
        return StreamSupport.stream(report.get("agents").spliterator(), false).map(a -> a.get("cli_name").asText()).toList();
    }

    private static List<String> taskIds(JsonNode report) {
        return StreamSupport.stream(report.get("anomalies").spliterator(), false).map(a -> a.get("task_id").asText()).toList();
    }

    /** Moves the task's rows of {@code table} {@code days} back in time. */
    private static void age(String table, String column, TaskRecord task, int days) {
        coordinator.context().getBean(Database.class).jdbi().useHandle(h -> h.createUpdate(
                        "UPDATE " + table + " SET " + column + " = now() - make_interval(days => :days) WHERE task_id = :id")
                .bind("days", days)
                .bind("id", task.id())
                .execute());
    }
}
