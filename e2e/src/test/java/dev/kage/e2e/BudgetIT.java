package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.budget.Period;
import dev.kage.testing.ScriptedModelServer;
import dev.kage.testing.ScriptedModelServer.Reply;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Budgets across worker processes: one tenant pool, many jobs at once in enforce mode, and a worker killed while
 * it holds a reservation. What was spent is what the scripted provider reported, summed from the result rows.
 */
class BudgetIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";

    @TempDir
    Path dir;
    private Path origin;

    @BeforeEach
    void setUp() throws Exception {
        origin = FleetIT.createRepo(dir.resolve("origin"));
    }

    /**
     * 500 jobs, two worker processes with 16 slots each, one tenant's day pool that fits about half of them: the
     * settled total never passes the pool, every refused job has its row and never called the provider, and the
     * pool's figure is exactly the sum of the result rows. The three processes are configured with different
     * {@code TENANT_MAX_TOKENS_PER_DAY} (a rolling change: the first worker still has the old 2,000, the coordinator
     * 5,000): all of them apply the one the last started worker published, and every refusal names it.
     */
    @Test
    void fiveHundredConcurrentJobsFromTwoWorkersNeverOverspendOneEnforcedPool() throws Exception {
        int jobs = 500;
        long limit = 20_000;
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            // Every answer within max_tokens (100), prompts of 5 tokens: what a provider reports never passes a hold.
            server.otherwise(n -> Reply.ok("answer " + n, 5, 20 + (n * 37) % 80).after(Duration.ofMillis(20))).warmUp();
            Path agents = agents("""
                    agents:
                      metered:
                        type: openai-compatible
                        base_url: %s
                        model: scripted
                        max_tokens: 100
                        prices: {input_per_mtok: 1.0, output_per_mtok: 4.0}
                        limits: {requests: 100000, window_seconds: 1}
                    """.formatted(server.openAiBaseUrl()));
            Map<String, String> settings = Map.of("BUDGET_MODE", "enforce", "TENANT_MAX_TOKENS_PER_DAY", Long.toString(limit),
                    "MAX_PARALLEL_CLIS", "16");
            Map<String, String> old = new HashMap<>(settings);
            old.put("TENANT_MAX_TOKENS_PER_DAY", "2000");
            Map<String, String> coordinator = new HashMap<>(settings);
            coordinator.put("TENANT_MAX_TOKENS_PER_DAY", "5000");
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "budget-500"))) {
                fleet.startCoordinator(env(agents, coordinator));
                fleet.awaitHealthy();
                String defaults = fleet.redis.keys().budgetDefaults();
                fleet.startWorker("budget-w1", dir.resolve("work1"), origin, env(agents, old));
                await().atMost(Duration.ofSeconds(60)).until(() -> "2000".equals(fleet.redis.redis().hget(defaults, "tenant:day_tokens")));
                fleet.startWorker("budget-w2", dir.resolve("work2"), origin, env(agents, settings));
                await().atMost(Duration.ofSeconds(60)).until(() -> Long.toString(limit).equals(
                        fleet.redis.redis().hget(defaults, "tenant:day_tokens")));
                fleet.awaitWorkers(2);
                // The first worker reads the fleet's defaults again when its last read is older than MAX_AGE.
                await().pollDelay(dev.kage.budget.FleetBudgetDefaults.MAX_AGE.multipliedBy(2)).until(() -> true);
                int server0 = server.requests().size();

                fleet.submitBatch(KEY, "metered", jobs, origin, i -> "job " + i);
                await().atMost(Duration.ofSeconds(180)).pollInterval(Duration.ofSeconds(1))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed')") == jobs);

                String day = fleet.redis.keys().tenantBudget("default", Period.DAY.id(Instant.now()));
                Map<String, String> pool = fleet.redis.redis().hgetall(day);
                long used = Long.parseLong(pool.get("used"));
                long completed = fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'");
                long refused = fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'BudgetExceededError'");
                long spent = fleet.count("SELECT sum(tokens_in + tokens_out + cache_read_tokens + cache_write_tokens) "
                        + "FROM execution_results WHERE status = 'completed'");
                System.out.printf("budget e2e: %d jobs, %d completed, %d refused, %d of %d tokens settled, %d overspent%n", jobs,
                        completed, refused, used, limit, Math.max(0, used - limit));
                assertThat(used).as("settled usage never passes the pool").isLessThanOrEqualTo(limit);
                assertThat(used).as("the pool holds exactly what the results say").isEqualTo(spent);
                assertThat(pool.get("reserved")).as("nothing stays held").isEqualTo("0");
                assertThat(completed).as("the pool was used, not refused wholesale").isGreaterThan(100);
                assertThat(refused).as("and it was the binding limit").isPositive().isEqualTo(jobs - completed);
                assertThat(server.requests().size() - server0).as("a refused job never calls the provider").isEqualTo((int) completed);
                assertThat(fleet.count("SELECT count(DISTINCT worker_id) FROM execution_results WHERE status = 'completed'"))
                        .as("both workers took jobs").isEqualTo(2);
                assertThat(fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'BudgetExceededError' "
                        + "AND error_details->>'pool' = 'tenant' AND error_message LIKE 'Tenant default would exceed its token budget for day %'"))
                        .isEqualTo(refused);
                assertThat(fleet.count("SELECT count(*) FROM task_errors WHERE error_type = 'BudgetExceededError' "
                        + "AND error_message LIKE '% > " + limit + "'")).as("every refusal under the fleet's limit").isEqualTo(refused);
                assertThat(Files.readString(Path.of("target", "e2e-logs", "budget-500", "budget-w1.log")))
                        .as("the first worker says it applies the fleet's defaults, not its own")
                        .contains("TENANT_MAX_* here is TENANT_MAX_TOKENS_PER_DAY=2000", "the fleet's is TENANT_MAX_TOKENS_PER_DAY=" + limit);

                var budgets = fleet.get("/api/v1/budgets", KEY);
                JsonNode view = JSON.readTree(budgets.body());
                assertThat(view.get("tenant").get(0).get("tokens_used").asLong()).isEqualTo(used);
                assertThat(view.get("tenant").get(0).get("token_limit").asLong()).isEqualTo(limit);
            }
        }
    }

    /**
     * A worker is killed with SIGKILL while its job holds a reservation (the provider is slow to answer); another
     * worker reclaims the job, its hold replaces the dead one's, and the pool is whole again: nothing stays held,
     * and what is used is what the run that finished reported.
     */
    @Test
    void aWorkerKilledAfterReservingLeavesNoHoldBehind() throws Exception {
        try (ScriptedModelServer server = ScriptedModelServer.start()) {
            server.warmUp();
            java.util.concurrent.atomic.AtomicBoolean first = new java.util.concurrent.atomic.AtomicBoolean(true);
            // The first call hangs (its worker is killed meanwhile); the one after the reclaim is answered at once.
            server.otherwise(n -> Reply.ok("slow answer", 5, 40).after(Duration.ofSeconds(first.getAndSet(false) ? 60 : 0)));
            Path agents = agents("""
                    agents:
                      metered:
                        type: openai-compatible
                        base_url: %s
                        model: scripted
                        max_tokens: 100
                    """.formatted(server.openAiBaseUrl()));
            Map<String, String> settings = Map.of("BUDGET_MODE", "enforce", "TENANT_MAX_TOKENS_PER_DAY", "10000",
                    "KAGE_RECLAIM_IDLE_SECONDS", "15");
            try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "budget-kill"))) {
                fleet.startCoordinator(env(agents, settings));
                fleet.awaitHealthy();
                int warm = server.requests().size();
                Process doomed = fleet.startWorker("budget-doomed", dir.resolve("work1"), origin, env(agents, settings));
                fleet.awaitWorkers(1);
                fleet.submitBatch(KEY, "metered", 1, origin, i -> "job " + i);
                String day = fleet.redis.keys().tenantBudget("default", Period.DAY.id(Instant.now()));
                await().atMost(Duration.ofSeconds(30)).until(() -> server.requests().size() > warm);
                assertThat(Long.parseLong(fleet.redis.redis().hget(day, "reserved"))).as("held while the call is out").isPositive();

                doomed.destroyForcibly();
                assertThat(doomed.waitFor(10, TimeUnit.SECONDS)).isTrue();
                fleet.startWorker("budget-heir", dir.resolve("work2"), origin, env(agents, settings));
                await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofSeconds(1))
                        .until(() -> fleet.count("SELECT count(*) FROM tasks WHERE status = 'completed'") == 1);

                assertThat(fleet.redis.redis().hget(day, "reserved")).isEqualTo("0");
                assertThat(fleet.redis.redis().hget(day, "used")).isEqualTo("45");
                assertThat(fleet.redis.redis().hlen(fleet.redis.keys().tenantHolds("default"))).isZero();
                assertThat(fleet.log("budget-heir")).contains("released the budget hold of the worker it was reclaimed from");
            }
        }
    }

    private Path agents(String yaml) throws Exception {
        Path file = dir.resolve("agents.yml");
        Files.writeString(file, yaml);
        return file;
    }

    private Map<String, String> env(Path agents, Map<String, String> extra) {
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents.toString());
        env.put("KAGE_PUSH_BRANCHES", "false");
        env.putAll(extra);
        return env;
    }


}
