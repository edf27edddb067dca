package dev.kage.coordinator.api;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.ratelimit.FleetRateLimiter;
import dev.kage.ratelimit.Limit;
import dev.kage.task.Priority;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code /api/v1/limits} against a live coordinator; the limiter it changes is the one every worker asks. */
class LimitsApiTest {
    private static final String ADMIN = "ops-key-12345";
    private static final String TENANT = "acme-key-123";
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("ops:" + ADMIN + ",acme:" + TENANT, Map.of("KAGE_ADMIN_TENANTS", "ops",
                "MAX_REQUESTS_PER_MINUTE", "30"));
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @Test
    void everyConfiguredGroupIsListedWithItsConfiguredAndCurrentLimit() throws Exception {
        HttpResponse<String> response = coordinator.get("/api/v1/limits", TENANT);
        assertThat(response.statusCode()).isEqualTo(200);
        JsonNode demo = find(json(response), "demo");
        assertThat(demo.get("agents")).extracting(JsonNode::asText).containsExactly("demo");
        assertThat(demo.at("/configured/requests").asLong()).isEqualTo(30);
        assertThat(demo.at("/configured/window_seconds").asDouble()).isEqualTo(60.0);
        assertThat(demo.at("/current/requests").asLong()).isEqualTo(30);
        assertThat(demo.get("source").asText()).isEqualTo("config");
        assertThat(demo.get("effective").asLong()).isEqualTo(30);
        assertThat(demo.get("cooldown_ms").asLong()).isZero();
    }

    @Test
    void anAdminChangesALimitForTheWholeFleetAndAWorkerSeesItAtOnceWithoutABurst() throws Exception {
        FleetRateLimiter worker = coordinator.context().getBean(FleetRateLimiter.class);
        worker.configure("claude-code", new Limit(30, Duration.ofMinutes(1), 0, Duration.ofSeconds(1)));
        for (int i = 0; i < 5; i++) {
            assertThat(worker.tryAcquire("claude-code", "job-" + i, Priority.NORMAL, 0).granted()).isTrue();
        }

        HttpResponse<String> changed = put("/api/v1/limits/claude-code", ADMIN, "{\"requests\": 6, \"window_seconds\": 30}");
        assertThat(changed.statusCode()).as(changed.body()).isEqualTo(200);
        assertThat(json(changed).at("/current/requests").asLong()).isEqualTo(6);
        assertThat(json(changed).at("/current/window_seconds").asDouble()).isEqualTo(30.0);
        assertThat(json(changed).get("source").asText()).isEqualTo("api");
        assertThat(json(changed).get("used").asLong()).isEqualTo(5);
        assertThat(json(changed).at("/current/guard_ms").asLong()).as("the default guard follows the window: 2.5 % of 30 s")
                .isEqualTo(750);

        // Five were granted in the window: one more, not six more.
        assertThat(worker.tryAcquire("claude-code", "job-5", Priority.NORMAL, 0).granted()).isTrue();
        assertThat(worker.tryAcquire("claude-code", "job-6", Priority.NORMAL, 0).granted()).isFalse();
        // A worker restarting with its configuration keeps the operator's change.
        worker.configure("claude-code", new Limit(30, Duration.ofMinutes(1), 0, Duration.ofSeconds(1)));
        assertThat(json(coordinator.get("/api/v1/limits/claude-code", TENANT)).at("/current/requests").asLong()).isEqualTo(6);

        // A Redis that lost its data rebuilds the group from a worker's configuration: the change, kept in Postgres, is
        // written back by the reconciler when it sees the new Redis.
        assertThat(coordinator.context().getBean(dev.kage.store.LimitOverrideStore.class).all()).containsKey("claude-code");
        coordinator.redis().redis().del(coordinator.redis().keys().limiter("claude-code"));
        worker.tryAcquire("claude-code", "after-loss", Priority.NORMAL, 0);
        assertThat(json(coordinator.get("/api/v1/limits/claude-code", TENANT)).get("source").asText()).isEqualTo("config");
        assertThat(coordinator.context().getBean(dev.kage.coordinator.task.Reconciler.class).reapplyLimitOverrides())
                .isGreaterThanOrEqualTo(1);
        assertThat(coordinator.context().getBean(dev.kage.coordinator.task.Reconciler.class).reapplyLimitOverrides())
                .as("already in force: nothing written, nothing logged").isZero();
        JsonNode restored = json(coordinator.get("/api/v1/limits/claude-code", TENANT));
        assertThat(restored.get("source").asText()).isEqualTo("api");
        assertThat(restored.at("/current/requests").asLong()).isEqualTo(6);
        // An explicit guard stays an explicit guard.
        assertThat(json(put("/api/v1/limits/claude-code", ADMIN, "{\"guard_ms\": 300}")).at("/current/guard_ms").asLong())
                .isEqualTo(300);
        assertThat(json(put("/api/v1/limits/claude-code", ADMIN, "{\"window_seconds\": 1}")).at("/current/guard_ms").asLong())
                .isEqualTo(300);

        HttpResponse<String> reset = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/limits/claude-code"))
                .header("X-API-Key", ADMIN).DELETE().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(reset.statusCode()).isEqualTo(200);
        assertThat(json(reset).at("/current/requests").asLong()).isEqualTo(30);
        assertThat(json(reset).get("source").asText()).isEqualTo("config");
        assertThat(coordinator.context().getBean(dev.kage.store.LimitOverrideStore.class).all()).doesNotContainKey("claude-code");
    }

    @Test
    void aTenantThatIsNotAnAdminCannotChangeFleetLimits() throws Exception {
        HttpResponse<String> response = put("/api/v1/limits/demo", TENANT, "{\"requests\": 1000}");
        assertThat(response.statusCode()).isEqualTo(403);
        assertThat(json(response).get("message").asText()).contains("KAGE_ADMIN_TENANTS");
        assertThat(json(coordinator.get("/api/v1/limits/demo", TENANT)).at("/current/requests").asLong()).isEqualTo(30);
    }

    @Test
    void badChangesAreRefusedNamingTheFieldAndChangeNothing() throws Exception {
        for (String body : new String[] {"{\"requests\": 0}", "{\"requests\": \"many\"}", "{\"window_seconds\": -1}",
                "{\"guard_ms\": 1.5}", "{\"rpm\": 5}", "[1]", "{", "", "{\"tokens\": 1000000000000001}"}) {
            HttpResponse<String> response = put("/api/v1/limits/demo", ADMIN, body);
            assertThat(response.statusCode()).as(body).isEqualTo(400);
            assertThat(json(response).get("errors").get(0).get("field").asText()).as(body).isNotBlank();
        }
        assertThat(json(coordinator.get("/api/v1/limits/demo", TENANT)).at("/current/requests").asLong()).isEqualTo(30);
        assertThat(coordinator.get("/api/v1/limits/no-such-agent", TENANT).statusCode()).isEqualTo(404);
        assertThat(put("/api/v1/limits/no-such-agent", ADMIN, "{\"requests\": 3}").statusCode()).isEqualTo(404);
    }

    /**
     * Changes of one group crossing each other (PUTs of different limits, DELETEs and the reconciler's restoring of the
     * stored change at once, from many threads) end with
     * Postgres and Redis holding the same change: each is made whole, Postgres then Redis, before the next begins. Without
     * the group's lock, a PUT's Redis write landing after a DELETE's left Redis under a change Postgres no longer had
     * (or two PUTs, each copy under the other's), until Redis next restarted.
     */
    @Test
    void changesOfOneGroupCrossingEachOtherLeavePostgresAndRedisAgreeing() throws Exception {
        dev.kage.store.LimitOverrideStore stored = coordinator.context().getBean(dev.kage.store.LimitOverrideStore.class);
        int threads = 8;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(threads);
        try {
            for (int round = 0; round < 40; round++) {
                java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(threads);
                List<java.util.concurrent.Future<Integer>> answers = new java.util.ArrayList<>();
                dev.kage.coordinator.task.Reconciler reconciler =
                        coordinator.context().getBean(dev.kage.coordinator.task.Reconciler.class);
                java.util.concurrent.CountDownLatch changed = new java.util.concurrent.CountDownLatch(threads - 1);
                for (int t = 0; t < threads; t++) {
                    int requests = 100 + round * threads + t;
                    boolean reset = t % 3 == 2;
                    if (t == threads - 1) {
                        // The reconciler writing the stored change back (as after a Redis that lost its data), again and
                        // again while the requests run, crosses them too.
                        answers.add(pool.submit(() -> {
                            start.await();
                            do {
                                reconciler.reapplyLimitOverrides();
                            } while (!changed.await(0, java.util.concurrent.TimeUnit.MILLISECONDS));
                            return 200;
                        }));
                        continue;
                    }
                    answers.add(pool.submit(() -> {
                        start.await();
                        try {
                            return reset
                                    ? coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/limits/demo"))
                                            .header("X-API-Key", ADMIN).DELETE().build(), HttpResponse.BodyHandlers.ofString())
                                            .statusCode()
                                    : put("/api/v1/limits/demo", ADMIN, "{\"requests\": " + requests + "}").statusCode();
                        } finally {
                            changed.countDown();
                        }
                    }));
                }
                for (var answer : answers) {
                    assertThat(answer.get(30, java.util.concurrent.TimeUnit.SECONDS)).isEqualTo(200);
                }
                JsonNode inForce = json(coordinator.get("/api/v1/limits/demo", TENANT));
                Limit kept = stored.all().get("demo");
                if (kept == null) {
                    assertThat(inForce.get("source").asText()).as("round %d: Postgres has no change", round).isEqualTo("config");
                    assertThat(inForce.at("/current/requests").asLong()).as("round %d", round).isEqualTo(30);
                } else {
                    assertThat(inForce.get("source").asText()).as("round %d: Postgres keeps %s", round, kept).isEqualTo("api");
                    assertThat(inForce.at("/current/requests").asLong()).as("round %d", round).isEqualTo(kept.requests());
                }
            }
        } finally {
            pool.shutdownNow();
            coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/limits/demo")).header("X-API-Key", ADMIN)
                    .DELETE().build(), HttpResponse.BodyHandlers.ofString());
        }
        assertThat(json(coordinator.get("/api/v1/limits/demo", TENANT)).at("/current/requests").asLong()).isEqualTo(30);
    }

    /**
     * A change that waits too long for its group's lock (held here as another coordinator's change would hold it) is
     * answered 503 {@code busy} after {@link dev.kage.store.LimitOverrideStore#LOCK_WAIT}, with nothing changed, and the
     * next change once the lock is free goes through.
     */
    @Test
    void aChangeThatWaitsTooLongForItsGroupIsAnsweredBusyAndChangesNothing() throws Exception {
        dev.kage.store.Database database = coordinator.context().getBean(dev.kage.store.Database.class);
        try (org.jdbi.v3.core.Handle other = database.jdbi().open()) {
            other.createQuery("SELECT pg_advisory_lock(:space, hashtext(:key))::text")
                    .bind("space", dev.kage.store.LimitOverrideStore.LOCK_SPACE)
                    .bind("key", coordinator.context().getBean(dev.kage.store.LimitOverrideStore.class).lockKey("demo"))
                    .mapTo(String.class).one();
            try {
                HttpResponse<String> busy = put("/api/v1/limits/demo", ADMIN, "{\"requests\": 7}");
                assertThat(busy.statusCode()).as(busy.body()).isEqualTo(503);
                assertThat(json(busy).get("error").asText()).isEqualTo("busy");
                assertThat(json(busy).get("message").asText()).contains("demo");
                assertThat(busy.headers().firstValue("Retry-After")).hasValue("1");
                assertThat(json(coordinator.get("/api/v1/limits/demo", TENANT)).at("/current/requests").asLong()).isEqualTo(30);
                assertThat(coordinator.context().getBean(dev.kage.store.LimitOverrideStore.class).all()).doesNotContainKey("demo");
                // A bad body is the client's mistake whatever holds the group: a 400 naming the field, at once (it
                // waited for the lock first and was answered 503 busy).
                HttpResponse<String> bad = put("/api/v1/limits/demo", ADMIN, "{\"requests\": 0}");
                assertThat(bad.statusCode()).as(bad.body()).isEqualTo(400);
                assertThat(json(bad).at("/errors/0/field").asText()).isEqualTo("requests");
            } finally {
                // A pooled connection: it must not go back to the pool holding the lock.
                other.createQuery("SELECT pg_advisory_unlock_all()::text").mapTo(String.class).one();
            }
        }
        HttpResponse<String> changed = put("/api/v1/limits/demo", ADMIN, "{\"requests\": 7}");
        assertThat(changed.statusCode()).as(changed.body()).isEqualTo(200);
        assertThat(json(changed).at("/current/requests").asLong()).isEqualTo(7);
        HttpResponse<String> reset = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/limits/demo"))
                .header("X-API-Key", ADMIN).DELETE().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(reset.statusCode()).isEqualTo(200);
        assertThat(json(reset).at("/current/requests").asLong()).isEqualTo(30);
    }

    private static HttpResponse<String> put(String path, String key, String body) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).header("X-API-Key", key)
                .header("Content-Type", "application/json").PUT(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    private static JsonNode find(JsonNode limits, String group) {
        for (JsonNode limit : limits.get("limits")) {
            if (limit.get("group").asText().equals(group)) {
                return limit;
            }
        }
        throw new AssertionError("no group " + group + " in " + limits);
    }
}
