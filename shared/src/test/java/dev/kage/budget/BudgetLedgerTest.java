package dev.kage.budget;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.kage.budget.BudgetLedger.Hold;
import dev.kage.budget.BudgetLedger.HoldRequest;
import dev.kage.budget.BudgetLedger.HoldStatus;
import dev.kage.budget.BudgetLedger.PoolKind;
import dev.kage.budget.BudgetLedger.PoolState;
import dev.kage.budget.BudgetLedger.Settlement;
import dev.kage.budget.BudgetLedger.TopUp;
import dev.kage.config.BudgetMode;
import dev.kage.testing.RedisFixture;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The ledger against a real Redis: atomic multi-pool holds, settle once, lapse, supersede, top-ups. */
class BudgetLedgerTest {
    private static final Duration LONG = Duration.ofMinutes(10);
    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void cleanUp() {
        redis.close();
    }

    private BudgetLedger ledger(BudgetMode mode, PeriodLimits tenantDefaults) {
        return ledger(redis.redis(), mode, tenantDefaults);
    }

    private BudgetLedger ledger(io.lettuce.core.api.sync.RedisCommands<String, String> commands, BudgetMode mode,
                                PeriodLimits tenantDefaults) {
        return new BudgetLedger(redis.keys(), commands, mode, 0.8, tenantDefaults, Clock.systemUTC());
    }

    private static HoldRequest request(String task, String job, String holder, long tokens, long taskLimit) {
        return new HoldRequest("acme", task, "claude-code", job, holder, tokens, 0, taskLimit, 0, PeriodLimits.NONE, LONG);
    }

    private static PeriodLimits dayTokens(long tokens) {
        return new PeriodLimits(tokens, 0, 0, 0);
    }

    @Test
    void warmingUpPutsEveryScriptInRedisCacheAndChangesNoPool() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(1_000));
        ledger.warmUp();
        String[] shas = BudgetLedger.SCRIPTS.stream().map(dev.kage.redis.LuaScript::sha).toArray(String[]::new);
        assertThat(redis.redis().scriptExists(shas)).containsOnly(true);
        assertThat(ledger.tenantPools("acme")).allSatisfy(pool -> assertThat(pool.used() + pool.reserved()).isZero());
    }

    @Test
    void manyThreadsReservingAndSettlingNeverOverspendTheTenantsDay() throws Exception {
        int threads = 32;
        long limit = 40_000;
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        CountDownLatch start = new CountDownLatch(1);
        AtomicLong settled = new AtomicLong();
        AtomicLong refused = new AtomicLong();
        List<Future<?>> done = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            StatefulRedisConnection<String, String> connection = redis.client().connect();
            connections.add(connection);
            BudgetLedger ledger = ledger(connection.sync(), BudgetMode.ENFORCE, dayTokens(limit));
            int thread = t;
            done.add(pool.submit(() -> {
                start.await();
                for (int i = 0; i < 20; i++) {
                    // Each job its own task: only the tenant's day pool binds.
                    Hold hold = ledger.reserve(request("task-" + thread + "-" + i, "job-" + thread + "-" + i, "w" + thread, 500,
                            1_000_000));
                    if (!hold.accepted()) {
                        refused.incrementAndGet();
                        continue;
                    }
                    long used = ThreadLocalRandom.current().nextLong(0, 501); // never more than held
                    if (ledger.settle(hold, used, 0).firstTime()) {
                        settled.addAndGet(used);
                    }
                }
                return null;
            }));
        }
        start.countDown();
        for (Future<?> f : done) {
            f.get();
        }
        pool.shutdown();
        connections.forEach(StatefulRedisConnection::close);

        PoolState day = ledger(BudgetMode.ENFORCE, dayTokens(limit)).tenantPools("acme").getFirst();
        assertThat(day.used()).isEqualTo(settled.get()).isLessThanOrEqualTo(limit);
        assertThat(day.reserved()).isZero();
        assertThat(refused.get()).as("the day pool was the binding limit").isPositive();
    }

    @Test
    void aHoldIsAllOrNothingAcrossTheTasksAndTheTenantsPools() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(1_500));
        Hold first = ledger.reserve(request("t1", "j1", "w1", 1_000, 50_000));
        assertThat(first.status()).isEqualTo(HoldStatus.HELD);

        Hold refused = ledger.reserve(request("t2", "j2", "w1", 1_000, 50_000));
        assertThat(refused.status()).isEqualTo(HoldStatus.REFUSED);
        assertThat(refused.refusal().pool().kind()).isEqualTo(PoolKind.TENANT);
        assertThat(refused.refusal().pool().period()).startsWith("day:");
        assertThat(refused.refusal().wouldUse()).isEqualTo(2_000);
        assertThat(refused.refusal().limit()).isEqualTo(1_500);
        // Nothing of the refused hold stayed anywhere: not in its task's pool, not in the month's.
        assertThat(ledger.taskPool("acme", "t2", 50_000, 0).reserved()).isZero();
        assertThat(ledger.tenantPools("acme").get(1).reserved()).isEqualTo(1_000);

        Hold overTask = ledger.reserve(request("t1", "j3", "w1", 600, 1_200));
        assertThat(overTask.refusal().pool().kind()).as("the task's pool of 50000 set by its first job stays")
                .isEqualTo(PoolKind.TENANT);
    }

    @Test
    void theTasksPoolIsSharedByItsJobsWithoutAFixedSplit() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, PeriodLimits.NONE);
        Hold a = ledger.reserve(request("t1", "t1:claude", "w1", 7_000, 10_000));
        Hold b = ledger.reserve(request("t1", "t1:codex", "w2", 4_000, 10_000));
        assertThat(a.accepted()).isTrue();
        assertThat(b.status()).isEqualTo(HoldStatus.REFUSED);
        assertThat(b.refusal().pool().kind()).isEqualTo(PoolKind.TASK);
        ledger.settle(a, 5_000, 0);
        Hold again = ledger.reserve(request("t1", "t1:codex", "w2", 4_000, 10_000));
        assertThat(again.accepted()).as("what the first job did not use is free for the second").isTrue();
        assertThat(ledger.taskPool("acme", "t1", 10_000, 0)).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(5_000L, 4_000L);
    }

    @Test
    void anAgentsPoolIsReservedInASecondStepAndARefusalGivesTheFirstBack() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, PeriodLimits.NONE);
        PeriodLimits agentDay = new PeriodLimits(1_000, 0, 0, 0);
        HoldRequest fits = new HoldRequest("acme", "t1", "codex", "j1", "w1", 800, 0, 50_000, 0, agentDay, LONG);
        Hold held = ledger.reserve(fits);
        assertThat(held.status()).isEqualTo(HoldStatus.HELD);
        assertThat(held.agentPools()).hasSize(2);

        HoldRequest other = new HoldRequest("globex", "t2", "codex", "j2", "w1", 800, 0, 50_000, 0, agentDay, LONG);
        Hold refused = ledger.reserve(other);
        assertThat(refused.status()).isEqualTo(HoldStatus.REFUSED);
        assertThat(refused.refusal().pool().kind()).isEqualTo(PoolKind.AGENT);
        assertThat(refused.refusal().pool().owner()).isEqualTo("codex");
        // The compensating release: globex's pools hold nothing.
        assertThat(ledger.taskPool("globex", "t2", 50_000, 0).reserved()).isZero();
        assertThat(ledger.tenantPools("globex")).allSatisfy(p -> assertThat(p.reserved()).isZero());
        assertThat(ledger.agentPools("codex", agentDay).getFirst()).extracting(PoolState::reserved).isEqualTo(800L);

        Settlement settlement = ledger.settle(held, 600, 0);
        assertThat(settlement.pools()).hasSize(5);
        assertThat(ledger.agentPools("codex", agentDay).getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(600L, 0L);
    }

    @Test
    void aReplayedSettleIsCountedOnce() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(100_000));
        Hold hold = ledger.reserve(request("t1", "j1", "w1", 1_000, 50_000));
        Settlement first = ledger.settle(hold, 700, 0);
        Settlement replay = ledger.settle(hold, 700, 0);
        Settlement other = ledger.settle(hold, 9_999, 0);
        assertThat(first.firstTime()).isTrue();
        assertThat(replay.firstTime()).isFalse();
        assertThat(other.firstTime()).isFalse();
        assertThat(ledger.taskPool("acme", "t1", 50_000, 0).used()).isEqualTo(700);
        assertThat(ledger.tenantPools("acme")).allSatisfy(p -> assertThat(p.used()).isEqualTo(700));
        // Reserving again under the settled id changes nothing either.
        assertThat(ledger.reserve(request("t1", "j1", "w1", 1_000, 50_000)).status()).isEqualTo(HoldStatus.DUPLICATE);
        assertThat(ledger.taskPool("acme", "t1", 50_000, 0).reserved()).isZero();
    }

    @Test
    void aHoldNobodySettlesLapsesAndThePoolIsWholeAgain() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        HoldRequest shortLived = new HoldRequest("acme", "t1", "claude-code", "j1", "dead-worker", 6_000, 0, 50_000, 0,
                PeriodLimits.NONE, Duration.ofMillis(300));
        assertThat(ledger.reserve(shortLived).accepted()).isTrue();
        assertThat(ledger.reserve(request("t2", "j2", "w2", 6_000, 50_000)).accepted()).isFalse();

        await().atMost(Duration.ofSeconds(10)).until(() -> ledger.sweepExpired() > 0);
        assertThat(ledger.tenantPools("acme")).allSatisfy(p -> assertThat(p.reserved()).isZero());
        assertThat(ledger.taskPool("acme", "t1", 50_000, 0).reserved()).isZero();
        assertThat(ledger.reserve(request("t2", "j2", "w2", 6_000, 50_000)).accepted()).isTrue();
    }

    @Test
    void aReservationSweepsLapsedHoldsOfItsTenantOnTheWay() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        ledger.reserve(new HoldRequest("acme", "t1", "claude-code", "j1", "dead-worker", 9_000, 0, 50_000, 0,
                PeriodLimits.NONE, Duration.ofMillis(200)));
        await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(50))
                .until(() -> ledger.reserve(request("t2", "j2-" + System.nanoTime(), "w2", 6_000, 50_000)).accepted());
    }

    @Test
    void aNewHoldForTheSameJobReleasesTheDeadWorkersHoldAndItsLateSettleStillCounts() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        Hold dead = ledger.reserve(request("t1", "job#1#1-0", "worker-a", 6_000, 50_000));
        Hold reclaimed = ledger.reserve(request("t1", "job#1#1-0", "worker-b", 6_000, 50_000));
        assertThat(reclaimed.status()).isEqualTo(HoldStatus.HELD);
        assertThat(reclaimed.superseded()).isEqualTo(1);
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(6_000);

        ledger.settle(reclaimed, 2_000, 0);
        // The first worker was only cut off, and reports what its run used after all: usage counts, no hold is touched.
        ledger.settle(dead, 1_000, 0);
        assertThat(ledger.tenantPools("acme").getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(3_000L, 0L);
    }

    @Test
    void aLimitChangedWhileAnAgentRunsAppliesToItsTopUpsAtOnce() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        Hold hold = ledger.reserve(request("t1", "j1", "w1", 9_000, 1_000_000));
        assertThat(hold.status()).isEqualTo(HoldStatus.HELD);
        assertThat(ledger.topUp(hold, 2_000, 2_000, 0, 0).granted()).as("1,000 left").isFalse();

        // Raised by an operator: the running agent may go on (it was stopped for a budget already lifted).
        ledger.setTenantLimits("acme", Map.of(BudgetLedger.DAY_TOKENS, 100_000L));
        TopUp raised = ledger.topUp(hold, 2_000, 5_000, 0, 0);
        assertThat(raised.granted()).isTrue();
        assertThat(raised.tokens()).isEqualTo(5_000);

        // Lowered below what is held: the next top-up is refused (it ran on against the old limit).
        ledger.setTenantLimits("acme", Map.of(BudgetLedger.DAY_TOKENS, 14_000L));
        assertThat(ledger.topUp(hold, 1, 1, 0, 0).granted()).isFalse();

        // Back to the fleet's default of 10,000.
        ledger.setTenantLimits("acme", Map.of(BudgetLedger.DAY_TOKENS, 100_000L));
        assertThat(ledger.topUp(hold, 1, 1, 0, 0).granted()).isTrue();
        ledger.clearTenantLimits("acme");
        assertThat(ledger.topUp(hold, 1, 1, 0, 0).granted()).isFalse();
        assertThat(redis.redis().hget(redis.keys().tenantBudget("acme", Period.DAY.id(java.time.Instant.now())), "limit"))
                .isEqualTo("10000");
        // A tenant with no pool today gets none from a change (a pool is made, with its TTL, by a reservation).
        ledger.setTenantLimits("globex", Map.of(BudgetLedger.DAY_TOKENS, 5L));
        assertThat(redis.redis().exists(redis.keys().tenantBudget("globex", Period.DAY.id(java.time.Instant.now()))))
                .isZero();
        ledger.clearTenantLimits("globex");
    }

    @Test
    void aReclaimedJobRefusedByItsTenantsPoolsReleasesTheDeadWorkersHoldInTheAgentsPoolsToo() {
        PeriodLimits agentDay = new PeriodLimits(100_000, 0, 0, 0);
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        Hold dead = ledger.reserve(new HoldRequest("acme", "t1", "codex", "job#1#1-0", "worker-a", 8_000, 0, 50_000, 0,
                agentDay, LONG));
        assertThat(dead.status()).isEqualTo(HoldStatus.HELD);
        assertThat(ledger.agentPools("codex", agentDay).getFirst().reserved()).isEqualTo(8_000);
        // Meanwhile the tenant's day filled up (another task's usage, settled).
        Hold other = ledger.reserve(request("t2", "j2", "w1", 1_000, 50_000));
        ledger.settle(other, 9_000, 0);

        // Worker A died; B reclaims the entry: the tenant's pools refuse it (A's 8,000 freed, 9,000 used, 8,000 asked).
        Hold reclaimed = ledger.reserve(new HoldRequest("acme", "t1", "codex", "job#1#1-0", "worker-b", 8_000, 0, 50_000, 0,
                agentDay, LONG));
        assertThat(reclaimed.status()).isEqualTo(HoldStatus.REFUSED);
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isZero();
        assertThat(ledger.agentPools("codex", agentDay).getFirst().reserved())
                .as("A's hold in the agent's pools, which every tenant's jobs of codex draw on, is gone too").isZero();
        // A's late settle (it was only cut off) still counts what it used.
        ledger.settle(dead, 500, 0);
        assertThat(ledger.agentPools("codex", agentDay).getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(500L, 0L);
    }

    @Test
    void aTopUpRefusedForDollarsSaysSoAndNamesThePoolWhoseDollarsRanOut() {
        // Tokens have room everywhere; the tenant's day has $0.01 left.
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, new PeriodLimits(0, 50_000, 0, 0));
        Hold hold = ledger.reserve(new HoldRequest("acme", "t1", "codex", "j1", "w1", 1_000, 40_000, 1_000_000, 0,
                PeriodLimits.NONE, LONG));
        assertThat(hold.status()).isEqualTo(HoldStatus.HELD);
        TopUp refused = ledger.topUp(hold, 500, 500, 20_000, 20_000);
        assertThat(refused.granted()).isFalse();
        assertThat(refused.usd()).isTrue();
        assertThat(refused.tightest().kind()).isEqualTo(PoolKind.TENANT);
        assertThat(refused.tightest().period()).startsWith("day:");
        assertThat(refused.roomLeft()).as("micro-USD left").isEqualTo(10_000);

        // A worker restarted with a token limit in place of the dollars.
        BudgetLedger restarted = ledger(BudgetMode.ENFORCE, dayTokens(1_500));
        restarted.defaults().publish(Map.of());
        TopUp tokens = restarted.topUp(restarted.reserve(request("t2", "j2", "w1", 1_000, 1_000_000)), 900, 900, 0, 0);
        assertThat(tokens.granted()).isFalse();
        assertThat(tokens.usd()).isFalse();
    }

    @Test
    void aTopUpGrowsTheHoldWhileThereIsRoomAndThenRefuses() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(5_000));
        Hold hold = ledger.reserve(request("t1", "j1", "w1", 1_000, 50_000));
        TopUp grown = ledger.topUp(hold, 500, 2_000, 0, 0);
        assertThat(grown.granted()).isTrue();
        assertThat(grown.tokens()).isEqualTo(2_000);
        TopUp partial = ledger.topUp(hold, 500, 4_000, 0, 0);
        assertThat(partial.granted()).isTrue();
        assertThat(partial.tokens()).as("half of the 2,000 left: more than the 500 needed").isEqualTo(1_000);
        assertThat(ledger.topUp(hold, 800, 4_000, 0, 0).tokens()).as("the 800 needed: more than half of 1,000").isEqualTo(800);
        TopUp refused = ledger.topUp(hold, 201, 201, 0, 0);
        assertThat(refused.granted()).as("200 left").isFalse();
        assertThat(refused.tightest().kind()).isEqualTo(PoolKind.TENANT);
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(4_800);

        ledger.settle(hold, 4_800, 0);
        assertThat(ledger.tenantPools("acme").getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(4_800L, 0L);
    }

    @Test
    void dollarLimitsRefuseLikeTokenLimits() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, new PeriodLimits(0, 0, 0, 2_000_000)); // $2 a month
        HoldRequest costly = new HoldRequest("acme", "t1", "claude-code", "j1", "w1", 1_000, 1_500_000, 50_000, 0,
                PeriodLimits.NONE, LONG);
        Hold held = ledger.reserve(costly);
        assertThat(held.accepted()).isTrue();
        Hold refused = ledger.reserve(new HoldRequest("acme", "t2", "claude-code", "j2", "w1", 1_000, 600_000, 50_000, 0,
                PeriodLimits.NONE, LONG));
        assertThat(refused.refusal().usd()).isTrue();
        assertThat(refused.refusal().pool().period()).startsWith("month:");
        Settlement settlement = ledger.settle(held, 900, 1_700_000);
        assertThat(settlement.pools().get(2).usdWarningNow()).as("$1.70 of $2 passes 80 %").isTrue();
        // A task's own dollar limit.
        Hold task = ledger.reserve(new HoldRequest("acme", "t3", "claude-code", "j3", "w1", 10, 100_000, 50_000, 50_000,
                PeriodLimits.NONE, LONG));
        assertThat(task.refusal().pool().kind()).isEqualTo(PoolKind.TASK);
    }

    @Test
    void aSpentDollarLimitRefusesAnAgentWithoutPricesWhoseRunsAskForNoDollars() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, new PeriodLimits(0, 5_000_000, 0, 0)); // $5 a day
        // Claude without `prices:` asks for $0 and reports its cost when it ends: $3, then $2.50.
        Hold first = ledger.reserve(new HoldRequest("acme", "t1", "claude-code", "j1", "w1", 1_000, 0, 50_000, 0, PeriodLimits.NONE, LONG));
        ledger.settle(first, 900, 3_000_000);
        Hold second = ledger.reserve(new HoldRequest("acme", "t2", "claude-code", "j2", "w1", 1_000, 0, 50_000, 0, PeriodLimits.NONE, LONG));
        assertThat(second.accepted()).as("$3 of $5 settled: room left").isTrue();
        ledger.settle(second, 900, 2_500_000);
        Hold third = ledger.reserve(new HoldRequest("acme", "t3", "claude-code", "j3", "w1", 1_000, 0, 50_000, 0, PeriodLimits.NONE, LONG));
        assertThat(third.accepted()).as("$5.50 of $5 settled").isFalse();
        assertThat(third.refusal().usd()).isTrue();
        assertThat(third.refusal().pool().period()).startsWith("day:");
        // The same for an agent's own dollar pool.
        BudgetLedger agents = ledger(BudgetMode.ENFORCE, PeriodLimits.NONE);
        PeriodLimits agentDay = new PeriodLimits(0, 1_000_000, 0, 0);
        Hold a = agents.reserve(new HoldRequest("initech", "t4", "codex", "j4", "w1", 1_000, 0, 50_000, 0, agentDay, LONG));
        agents.settle(a, 900, 1_000_000);
        Hold b = agents.reserve(new HoldRequest("initech", "t5", "codex", "j5", "w1", 1_000, 0, 50_000, 0, agentDay, LONG));
        assertThat(b.accepted()).isFalse();
        assertThat(b.refusal().pool().kind()).isEqualTo(PoolKind.AGENT);
    }

    @Test
    void logModeGrantsEveryHoldAndFlagsTheLimitAndTheWarningOncePerPool() {
        BudgetLedger ledger = ledger(BudgetMode.LOG, dayTokens(1_000));
        Hold a = ledger.reserve(request("t1", "j1", "w1", 900, 50_000));
        Hold b = ledger.reserve(request("t2", "j2", "w1", 900, 50_000));
        assertThat(b.accepted()).isTrue();
        Settlement first = ledger.settle(a, 850, 0);
        assertThat(first.pools().get(1).warningNow()).isTrue();
        assertThat(first.pools().get(1).exceededNow()).isFalse();
        Settlement second = ledger.settle(b, 850, 0);
        assertThat(second.pools().get(1).warningNow()).as("one warning per pool and period").isFalse();
        assertThat(second.pools().get(1).warningIssued()).isTrue();
        assertThat(second.pools().get(1).exceededNow()).isTrue();
        Hold c = ledger.reserve(request("t3", "j3", "w1", 10, 50_000));
        assertThat(ledger.settle(c, 10, 0).pools().get(1).exceededNow()).as("passed once, flagged once").isFalse();
    }

    @Test
    void anOperatorsTenantLimitsReplaceTheDefaultsAtTheNextReservation() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(100_000));
        assertThat(ledger.reserve(request("t1", "j1", "w1", 5_000, 50_000)).accepted()).isTrue();
        ledger.setTenantLimits("acme", new PeriodLimits(6_000, 0, 0, 0));
        Hold refused = ledger.reserve(request("t2", "j2", "w1", 5_000, 50_000));
        assertThat(refused.refusal().limit()).isEqualTo(6_000);
        assertThat(ledger.tenantLimits("acme").dayTokens()).isEqualTo(6_000);
        ledger.clearTenantLimits("acme");
        assertThat(ledger.reserve(request("t2", "j2", "w1", 5_000, 50_000)).accepted()).isTrue();
    }

    /** A ledger as a worker of its own builds it, on its own connection, reading the fleet's defaults on every call. */
    private BudgetLedger worker(PeriodLimits tenantDefaults, List<StatefulRedisConnection<String, String>> connections) {
        StatefulRedisConnection<String, String> connection = redis.client().connect();
        connections.add(connection);
        return new BudgetLedger(redis.keys(), connection.sync(), BudgetMode.ENFORCE, 0.8,
                new FleetBudgetDefaults(redis.keys(), connection.sync(), tenantDefaults, Duration.ZERO), Clock.systemUTC());
    }

    @Test
    void workersConfiguredDifferentlyAllApplyTheDefaultsTheLastStartedPublished() throws Exception {
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        // A rolling change of TENANT_MAX_TOKENS_PER_DAY: the old worker still runs, the new one has started since.
        BudgetLedger old = worker(dayTokens(1_000), connections);
        old.defaults().publish(Map.of());
        BudgetLedger current = worker(dayTokens(100_000), connections);
        current.defaults().publish(Map.of());
        int threads = 16;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<Boolean>> granted = new ArrayList<>();
        try {
            for (int i = 0; i < 200; i++) {
                BudgetLedger ledger = i % 2 == 0 ? old : current;
                String job = "j" + i;
                granted.add(pool.submit(() -> {
                    start.await();
                    return ledger.reserve(request("t" + job, job, "w" + job, 1_000, 50_000)).accepted();
                }));
            }
            start.countDown();
            long grants = 0;
            for (Future<Boolean> f : granted) {
                grants += f.get() ? 1 : 0;
            }
            // Each worker applying its own default, the old one refused every job it took (1,000 held leaves no room) and
            // set the pool's limit back to 1,000 for the new one's next job too.
            assertThat(grants).as("jobs granted of 200 asking 1,000 each, under the fleet's 100,000").isEqualTo(100);
            assertThat(old.tenantPools("acme").getFirst().reserved()).isEqualTo(100_000L);
            assertThat(redis.redis().hget(redis.keys().tenantBudget("acme", Period.DAY.id(Instant.now())), "limit"))
                    .as("the limit the pool stores").isEqualTo("100000");
            assertThat(old.tenantLimits("acme").dayTokens()).isEqualTo(100_000);
            assertThat(old.defaults().tenantConfigured().dayTokens()).as("its own configuration is kept").isEqualTo(1_000);
        } finally {
            pool.shutdownNow();
            connections.forEach(StatefulRedisConnection::close);
        }
    }

    @Test
    void aRedisThatLostTheDefaultsGetsThoseOfTheFirstWorkerToLookAndAProcessThatNeverPublishedStoresNone() {
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        try {
            // The coordinator's ledger: it never publishes. With nothing stored it applies its own, and stores nothing.
            BudgetLedger coordinator = worker(dayTokens(500), connections);
            assertThat(coordinator.tenantLimits("acme").dayTokens()).isEqualTo(500);
            assertThat(redis.redis().exists(redis.keys().budgetDefaults())).isZero();

            BudgetLedger first = worker(dayTokens(3_000), connections);
            first.defaults().publish(Map.of());
            BudgetLedger second = worker(dayTokens(100_000), connections);
            second.defaults().publish(Map.of());
            assertThat(coordinator.tenantLimits("acme").dayTokens()).as("the published ones, once there are").isEqualTo(100_000);

            // Redis lost its data: the first worker to look stores its own, the others follow.
            redis.redis().del(redis.keys().budgetDefaults());
            assertThat(first.reserve(request("t1", "j1", "w1", 2_000, 50_000)).accepted()).isTrue();
            Hold refused = second.reserve(request("t2", "j2", "w2", 2_000, 50_000));
            assertThat(refused.accepted()).as("the second follows the first's stored 3,000").isFalse();
            assertThat(refused.refusal().limit()).isEqualTo(3_000);
            assertThat(redis.redis().hget(redis.keys().budgetDefaults(), "tenant:day_tokens")).isEqualTo("3000");
            assertThat(redis.redis().hget(redis.keys().tenantBudget("acme", Period.DAY.id(Instant.now())), "limit"))
                    .isEqualTo("3000");
            // A worker started after it publishes again: its own then.
            BudgetLedger third = worker(dayTokens(100_000), connections);
            third.defaults().publish(Map.of());
            assertThat(second.reserve(request("t2", "j2", "w2", 2_000, 50_000)).accepted()).isTrue();
        } finally {
            connections.forEach(StatefulRedisConnection::close);
        }
    }

    @Test
    void aPublicationRedisTookLateNeverUndoesThatOfAWorkerStartedAfterIt() {
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        try {
            String key = redis.keys().budgetDefaults();
            redis.redis().set(key, "not a hash");
            BudgetLedger early = worker(dayTokens(1_000), connections);
            assertThatThrownBy(() -> early.defaults().publish(Map.of())).isInstanceOf(io.lettuce.core.RedisException.class);
            redis.redis().del(key);
            await().pollDelay(Duration.ofMillis(5)).until(() -> true); // the later worker starts a few ms later
            BudgetLedger late = worker(dayTokens(50_000), connections);
            late.defaults().publish(Map.of());

            assertThat(early.tenantDefaults().dayTokens()).as("its late publication did not replace the later one").isEqualTo(50_000);
            assertThat(redis.redis().hget(key, "tenant:day_tokens")).isEqualTo("50000");
        } finally {
            connections.forEach(StatefulRedisConnection::close);
        }
    }

    @Test
    void anAgentsBudgetIsTheOneItsLastStartedWorkerPublishedAndAnAgentWithoutOneThere() {
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        try {
            PeriodLimits small = new PeriodLimits(1_000, 0, 0, 0);
            BudgetLedger old = worker(PeriodLimits.NONE, connections);
            old.defaults().publish(Map.of("codex", small, "gemini", PeriodLimits.NONE));
            BudgetLedger current = worker(PeriodLimits.NONE, connections);
            current.defaults().publish(Map.of("codex", new PeriodLimits(10_000, 0, 0, 0), "gemini", small));

            HoldRequest codex = new HoldRequest("acme", "t1", "codex", "j1", "w1", 5_000, 0, 50_000, 0, small, LONG);
            Hold held = old.reserve(codex);
            assertThat(held.accepted()).as("5,000 under the fleet's 10,000, though this worker's agents.yml says 1,000").isTrue();
            assertThat(held.agentPools()).hasSize(2);
            assertThat(old.agentPools("codex", small).getFirst()).extracting(PoolState::limit, PoolState::reserved)
                    .containsExactly(10_000L, 5_000L);
            assertThat(redis.redis().hget(redis.keys().agentBudget("codex", Period.DAY.id(Instant.now())), "limit"))
                    .isEqualTo("10000");

            // Gemini has a budget now (the later worker's), though the old worker's configuration has none.
            HoldRequest gemini = new HoldRequest("acme", "t2", "gemini", "j2", "w1", 5_000, 0, 50_000, 0, PeriodLimits.NONE, LONG);
            Hold refused = old.reserve(gemini);
            assertThat(refused.accepted()).isFalse();
            assertThat(refused.refusal().pool().kind()).isEqualTo(PoolKind.AGENT);
            assertThat(refused.refusal().limit()).isEqualTo(1_000);
        } finally {
            connections.forEach(StatefulRedisConnection::close);
        }
    }

    @Test
    void aPublicationRedisRefusedIsMadeBeforeTheWorkersNextRead() {
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        try {
            BudgetLedger other = worker(dayTokens(1_000), connections);
            other.defaults().publish(Map.of());
            // Redis refuses the write (here: the key holds a string, a WRONGTYPE error; at start-up, Redis down).
            String key = redis.keys().budgetDefaults();
            redis.redis().del(key);
            redis.redis().set(key, "not a hash");
            BudgetLedger starting = worker(dayTokens(9_000), connections);
            assertThatThrownBy(() -> starting.defaults().publish(Map.of("codex", new PeriodLimits(0, 0, 50_000, 0))))
                    .isInstanceOf(io.lettuce.core.RedisException.class);
            redis.redis().del(key);
            other.defaults().publish(Map.of());

            assertThat(starting.tenantDefaults().dayTokens()).as("its own, published before it read").isEqualTo(9_000);
            assertThat(redis.redis().hgetall(key)).containsEntry("tenant:day_tokens", "9000")
                    .containsEntry("agent:codex:month_tokens", "50000");
            assertThat(other.tenantDefaults().dayTokens()).isEqualTo(9_000);
        } finally {
            connections.forEach(StatefulRedisConnection::close);
        }
    }

    @Test
    void aPublishedChangeReachesAProcessWithinTheReadsMaximumAge() {
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        try {
            java.util.concurrent.atomic.AtomicLong nanos = new java.util.concurrent.atomic.AtomicLong();
            StatefulRedisConnection<String, String> connection = redis.client().connect();
            connections.add(connection);
            FleetBudgetDefaults reader = new FleetBudgetDefaults(redis.keys(), connection.sync(), dayTokens(1_000),
                    FleetBudgetDefaults.MAX_AGE, nanos::get);
            assertThat(reader.tenant().dayTokens()).isEqualTo(1_000);
            worker(dayTokens(7_000), connections).defaults().publish(Map.of());
            nanos.addAndGet(FleetBudgetDefaults.MAX_AGE.toNanos() - 1);
            assertThat(reader.tenant().dayTokens()).as("read less than MAX_AGE ago").isEqualTo(1_000);
            nanos.addAndGet(1);
            assertThat(reader.tenant().dayTokens()).isEqualTo(7_000);
        } finally {
            connections.forEach(StatefulRedisConnection::close);
        }
    }

    @Test
    void aPoolAlreadyPastItsLimitGrantsNoTopUp() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(1_000));
        Hold running = ledger.reserve(request("t1", "j1", "w1", 500, 50_000));
        Hold overran = ledger.reserve(request("t2", "j2", "w1", 400, 50_000));
        ledger.settle(overran, 900, 0); // an overrun settles: 900 used + 500 held > 1,000
        TopUp topUp = ledger.topUp(running, 1, 100, 0, 0);
        assertThat(topUp.granted()).as("no room in a pool past its limit").isFalse();
        assertThat(topUp.roomLeft()).isZero();
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(500);
    }

    @Test
    void aTopUpSentAgainAfterAReconnectGrowsOrShrinksTheHoldOnce() {
        // Lettuce sends a command again when the connection dropped before its reply (at-least-once): the same call,
        // with the same id, must not grow the hold twice, nor give back twice (which would let others over-reserve).
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        Hold hold = ledger.reserve(request("t1", "j1", "w1", 1_000, 50_000));
        String holds = redis.keys().tenantHolds("acme");
        TopUp first = ledger.topUpStep(hold, holds, hold.tenantPools(), 100, 2_000, 0, 0, "c1");
        TopUp again = ledger.topUpStep(hold, holds, hold.tenantPools(), 100, 2_000, 0, 0, "c1");
        assertThat(first.tokens()).isEqualTo(2_000);
        assertThat(again.granted()).isTrue();
        assertThat(again.tokens()).as("the first call's answer").isEqualTo(2_000);
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(3_000);

        ledger.topUpStep(hold, holds, hold.tenantPools(), -500, -500, 0, 0, "c2");
        ledger.topUpStep(hold, holds, hold.tenantPools(), -500, -500, 0, 0, "c2");
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).as("given back once").isEqualTo(2_500);
        assertThat(ledger.topUpStep(hold, holds, hold.tenantPools(), 100, 100, 0, 0, "c3").tokens()).isEqualTo(100);
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(2_600);
        // Each ledger's calls have ids of their own: two top-ups through the public API both count.
        ledger.topUp(hold, 10, 10, 0, 0);
        ledger.topUp(hold, 10, 10, 0, 0);
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(2_620);

        ledger.settle(hold, 2_000, 0);
        assertThat(redis.redis().hget(holds, hold.id() + "#topups")).as("gone with the hold's record").isNull();
        assertThat(ledger.tenantPools("acme").getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(2_000L, 0L);
    }

    @Test
    void aTopUpNearThePoolsEndLeavesRoomForTheJobsBesideIt() {
        // Two jobs share a day of 12,000 tokens, 5,500 held each: 1,000 left. The first, printing, needs 10 more and
        // would like 2,000; had it taken the 1,000, the second would be stopped at its next 10 while room sat unused.
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(12_000));
        Hold first = ledger.reserve(request("t1", "j1", "w1", 5_500, 50_000));
        Hold second = ledger.reserve(request("t2", "j2", "w1", 5_500, 50_000));
        TopUp a = ledger.topUp(first, 10, 2_000, 0, 0);
        assertThat(a.granted()).isTrue();
        assertThat(a.tokens()).isEqualTo(500);
        TopUp b = ledger.topUp(second, 10, 2_000, 0, 0);
        assertThat(b.granted()).as("room is left for the second job").isTrue();
        assertThat(b.tokens()).isEqualTo(250);
        // Until the pool is truly spent: each takes what it needs, and only then is one refused.
        assertThat(ledger.topUp(first, 200, 2_000, 0, 0).tokens()).isEqualTo(200);
        assertThat(ledger.topUp(second, 50, 50, 0, 0).tokens()).isEqualTo(50);
        assertThat(ledger.topUp(first, 1, 1, 0, 0).granted()).as("12,000 held").isFalse();
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(12_000);
    }

    @Test
    void aTopUpGrowsTheDollarsHeldAndRefusesWhenTheDollarPoolIsSpent() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, new PeriodLimits(0, 1_000_000, 0, 0)); // $1 a day
        Hold hold = ledger.reserve(new HoldRequest("acme", "t1", "claude-code", "j1", "w1", 100, 600_000, 50_000, 0,
                PeriodLimits.NONE, LONG));
        assertThat(ledger.topUp(hold, 10, 10, 300_000, 300_000).granted()).isTrue();
        assertThat(ledger.topUp(hold, 10, 10, 200_000, 200_000).granted()).as("$0.90 held, $0.20 more does not fit").isFalse();
        assertThat(ledger.tenantPools("acme").getFirst().usdReservedMicros()).isEqualTo(900_000);
    }

    @Test
    void theAgentsPoolsAreAskedForWhatIsNeededNotForAllTheTenantsPoolsGranted() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, PeriodLimits.NONE);
        PeriodLimits agentDay = new PeriodLimits(1_500, 0, 0, 0);
        Hold hold = ledger.reserve(new HoldRequest("acme", "t1", "codex", "j1", "w1", 1_000, 0, 50_000, 0, agentDay, LONG));
        TopUp topUp = ledger.topUp(hold, 100, 5_000, 0, 0);
        assertThat(topUp.granted()).as("the agent's day has 500 left: enough for the 100 needed").isTrue();
        assertThat(topUp.tokens()).as("half of it").isEqualTo(250);
        // The tenant's pools hold what the agent's granted, not the 5,000 the tenant's had room for.
        assertThat(ledger.taskPool("acme", "t1", 50_000, 0).reserved()).isEqualTo(1_250);
        assertThat(ledger.agentPools("codex", agentDay).getFirst().reserved()).isEqualTo(1_250);
    }

    @Test
    void aRenewedHoldStaysOpenAndALapsedOneSaysSo() {
        BudgetLedger ledger = ledger(BudgetMode.ENFORCE, dayTokens(10_000));
        Hold open = ledger.reserve(request("t1", "j1", "w1", 100, 50_000));
        assertThat(ledger.renew(open)).isTrue();
        Hold brief = ledger.reserve(new HoldRequest("acme", "t2", "claude-code", "j2", "w1", 100, 0, 50_000, 0, PeriodLimits.NONE,
                Duration.ofMillis(200)));
        await().atMost(Duration.ofSeconds(10)).until(() -> ledger.sweepExpired() > 0);
        assertThat(ledger.renew(brief)).isFalse();
        assertThat(ledger.tenantPools("acme").getFirst().reserved()).isEqualTo(100);
    }

    /** A ledger whose clock stands at {@code at} (UTC): what a worker sees just before or after midnight. */
    private BudgetLedger ledgerAt(String at, PeriodLimits tenantDefaults) {
        return new BudgetLedger(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8, tenantDefaults,
                Clock.fixed(Instant.parse(at), ZoneOffset.UTC));
    }

    @Test
    void aSettleAndATopUpUseThePoolsTheHoldsRecordNamesNotTheCallersHold() {
        PeriodLimits agentDay = new PeriodLimits(100_000, 0, 0, 0);
        BudgetLedger before = ledgerAt("2026-11-28T23:59:59Z", dayTokens(100_000));
        BudgetLedger after = ledgerAt("2026-11-29T00:00:01Z", dayTokens(100_000));
        HoldRequest request = new HoldRequest("acme", "t1", "codex", "j1", "w1", 1_000, 0, 50_000, 0, agentDay, LONG);
        assertThat(before.reserve(request).status()).isEqualTo(HoldStatus.HELD);
        // The same reservation replayed after midnight (a command re-sent after a reconnect): the caller's Hold names
        // the new day's pools, while the hold Redis keeps was taken in the old day's.
        Hold replayed = after.reserve(request);
        assertThat(replayed.status()).isEqualTo(HoldStatus.DUPLICATE);
        assertThat(replayed.tenantPools().get(1).period()).isEqualTo("day:2026-11-29");

        assertThat(after.topUp(replayed, 100, 100, 0, 0).granted()).isTrue();
        assertThat(before.tenantPools("acme").getFirst().reserved()).as("the top-up grew the hold's own day").isEqualTo(1_100);
        assertThat(before.agentPools("codex", agentDay).getFirst().reserved()).isEqualTo(1_100);

        Settlement settlement = after.settle(replayed, 700, 0);
        assertThat(settlement.firstTime()).isTrue();
        assertThat(settlement.pools()).extracting(p -> p.pool().period())
                .containsExactly(null, "day:2026-11-28", "month:2026-11", "day:2026-11-28", "month:2026-11");
        for (BudgetLedger at : List.of(before, after)) {
            boolean holdsDay = at == before;
            assertThat(at.tenantPools("acme").getFirst()).extracting(PoolState::used, PoolState::reserved)
                    .containsExactly(holdsDay ? 700L : 0L, 0L);
            assertThat(at.agentPools("codex", agentDay).getFirst()).extracting(PoolState::used, PoolState::reserved)
                    .containsExactly(holdsDay ? 700L : 0L, 0L);
        }
        assertThat(after.taskPool("acme", "t1", 50_000, 0)).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(700L, 0L);
        // Replayed again: nothing changes, and the answer names the pools the settlement charged.
        Settlement again = after.settle(replayed, 700, 0);
        assertThat(again.firstTime()).isFalse();
        assertThat(again.pools()).extracting(p -> p.pool().period())
                .containsExactly(null, "day:2026-11-28", "month:2026-11", "day:2026-11-28", "month:2026-11");
        assertThat(before.tenantPools("acme").getFirst().used()).isEqualTo(700);
    }

    @Test
    void aHoldTakenBeforeMidnightIsChargedToItsOwnDayAndKnownAfterItInTheAgentsPoolsAsInTheTenants() {
        PeriodLimits agentDay = new PeriodLimits(100_000, 0, 0, 0);
        BudgetLedger before = ledgerAt("2026-11-28T23:59:59Z", dayTokens(100_000));
        BudgetLedger after = ledgerAt("2026-11-29T00:00:01Z", dayTokens(100_000));
        // Settled after midnight: the day it was held in is released and charged, for the tenant and the agent alike.
        Hold late = before.reserve(new HoldRequest("acme", "t0", "codex", "j0", "w1", 1_000, 0, 50_000, 0, agentDay, LONG));
        after.settle(late, 400, 0);
        assertThat(before.tenantPools("acme").getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(400L, 0L);
        assertThat(before.agentPools("codex", agentDay).getFirst()).extracting(PoolState::used, PoolState::reserved)
                .containsExactly(400L, 0L);
        assertThat(after.tenantPools("acme").getFirst().used()).isZero();
        assertThat(after.agentPools("codex", agentDay).getFirst().used()).isZero();

        // A job reclaimed after midnight from a worker that died before it: both of the dead worker's holds go.
        before.reserve(new HoldRequest("acme", "t1", "codex", "job#1#1-0", "worker-a", 1_000, 0, 50_000, 0, agentDay, LONG));
        Hold reclaimed = after.reserve(new HoldRequest("acme", "t1", "codex", "job#1#1-0", "worker-b", 1_000, 0, 50_000, 0,
                agentDay, LONG));
        assertThat(reclaimed.status()).isEqualTo(HoldStatus.HELD);
        assertThat(reclaimed.superseded()).as("the tenant's hold and the agent's").isEqualTo(2);
        assertThat(before.tenantPools("acme").getFirst().reserved()).isZero();
        assertThat(before.agentPools("codex", agentDay).getFirst().reserved()).isZero();
        assertThat(after.agentPools("codex", agentDay)).extracting(PoolState::reserved).containsExactly(1_000L, 1_000L);

        // A reservation replayed after midnight under an id settled before it holds nothing anywhere.
        HoldRequest settled = new HoldRequest("acme", "t2", "codex", "j2", "w1", 1_000, 0, 50_000, 0, agentDay, LONG);
        before.settle(before.reserve(settled), 300, 0);
        assertThat(after.reserve(settled).status()).isEqualTo(HoldStatus.DUPLICATE);
        assertThat(after.agentPools("codex", agentDay)).extracting(PoolState::reserved).containsExactly(1_000L, 1_000L);
        assertThat(after.tenantPools("acme").getFirst().reserved()).isEqualTo(1_000);
    }
}
