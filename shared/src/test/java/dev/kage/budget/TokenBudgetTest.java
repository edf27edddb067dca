package dev.kage.budget;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.budget.TokenBudget.Reservation;
import dev.kage.budget.TokenBudget.Settlement;
import dev.kage.config.BudgetMode;
import dev.kage.testing.RedisFixture;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class TokenBudgetTest {
    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void cleanUp() {
        redis.close();
    }

    @Test
    void concurrentReservationsInEnforceModeNeverPassTheLimit() throws Exception {
        int threads = 32;
        List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
        RedisClient client = redis.client();
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<Reservation>> results = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            StatefulRedisConnection<String, String> connection = client.connect();
            connections.add(connection);
            TokenBudget budget = new TokenBudget(redis.keys(), connection.sync(), BudgetMode.ENFORCE, 0.8);
            String id = "job-" + i;
            results.add(pool.submit(() -> {
                start.await();
                return budget.reserve("acme", "task-1", id, 1_000, 10_000);
            }));
        }
        start.countDown();
        long accepted = 0;
        for (Future<Reservation> result : results) {
            if (result.get().accepted()) {
                accepted++;
            }
        }
        pool.shutdown();
        connections.forEach(StatefulRedisConnection::close);

        assertThat(accepted).isEqualTo(10);
        TokenBudget budget = new TokenBudget(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8);
        assertThat(budget.state("acme", "task-1", 10_000).reserved()).isEqualTo(10_000);
        assertThat(budget.state("acme", "task-1", 10_000).remaining()).isZero();
    }

    @Test
    void aReplayedReservationOrSettlementChangesNothing() {
        TokenBudget budget = new TokenBudget(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8);
        Reservation first = budget.reserve("acme", "t", "job#1", 500, 1_000);
        Reservation replay = budget.reserve("acme", "t", "job#1", 500, 1_000);
        assertThat(first.accepted()).isTrue();
        assertThat(replay.duplicate()).isTrue();
        assertThat(budget.state("acme", "t", 1_000).reserved()).isEqualTo(500);

        Settlement settled = budget.settle("acme", "t", "job#1", 300, 1_000);
        Settlement again = budget.settle("acme", "t", "job#1", 300, 1_000);
        assertThat(settled.firstTime()).isTrue();
        assertThat(again.firstTime()).isFalse();
        assertThat(budget.state("acme", "t", 1_000)).isEqualTo(new TokenBudget.PoolState(1_000, 300, 0));
    }

    @Test
    void settlementReleasesTheReservationSoTheSharedPoolServesTheNextJob() {
        TokenBudget budget = new TokenBudget(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8);
        assertThat(budget.reserve("acme", "t", "a#1", 800, 1_000).accepted()).isTrue();
        assertThat(budget.reserve("acme", "t", "b#1", 800, 1_000).accepted()).isFalse();
        budget.settle("acme", "t", "a#1", 100, 1_000);
        Reservation b = budget.reserve("acme", "t", "b#1", 800, 1_000);
        assertThat(b.accepted()).isTrue();
        assertThat(b.remaining()).isEqualTo(100);
    }

    @Test
    void logModeAcceptsEverythingAndReportsTheViolationAndTheWarningOnce() {
        TokenBudget budget = new TokenBudget(redis.keys(), redis.redis(), BudgetMode.LOG, 0.8);
        assertThat(budget.reserve("acme", "t", "a#1", 5_000, 1_000).accepted()).isTrue();
        Settlement under = budget.settle("acme", "t", "a#1", 850, 1_000);
        assertThat(under.warningNow()).isTrue();
        assertThat(under.exceeded()).isFalse();
        budget.reserve("acme", "t", "b#1", 5_000, 1_000);
        Settlement over = budget.settle("acme", "t", "b#1", 200, 1_000);
        assertThat(over.warningNow()).isFalse();
        assertThat(over.warningIssued()).isTrue();
        assertThat(over.exceeded()).isTrue();
        assertThat(over.used()).isEqualTo(1_050);
        assertThat(over.remaining()).isEqualTo(-50);
        assertThat(over.percentUsed()).isEqualTo(105.0);
    }

    @Test
    void poolsOfDifferentTenantsAreSeparateKeysUnderTheirHashTags() {
        TokenBudget budget = new TokenBudget(redis.keys(), redis.redis(), BudgetMode.ENFORCE, 0.8);
        budget.reserve("acme", "t", "a#1", 900, 1_000);
        assertThat(budget.reserve("globex", "t", "a#1", 900, 1_000).accepted()).isTrue();
        assertThat(redis.keys().taskBudget("acme", "t")).isEqualTo(redis.namespace() + ":budget:{acme}:task:t");
        assertThat(redis.redis().pttl(redis.keys().taskBudget("acme", "t"))).isPositive();
    }
}
