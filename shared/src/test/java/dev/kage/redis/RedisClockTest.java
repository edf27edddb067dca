package dev.kage.redis;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.kage.budget.BudgetLedger;
import dev.kage.budget.Period;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.infra.KageFactory;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@link RedisClock} against the real server, and through a proxy that cuts it off. */
class RedisClockTest {
    private static final Clock LONG_AGO = Clock.fixed(Instant.parse("2001-01-01T00:00:00Z"), ZoneOffset.UTC);
    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void cleanUp() {
        redis.close();
    }

    @Test
    void itReadsTheServersTimeWhateverThisProcessesClockSays() {
        RedisClock clock = new RedisClock(redis.redis(), LONG_AGO);
        List<String> time = redis.redis().time();
        Instant server = Instant.ofEpochSecond(Long.parseLong(time.get(0)), Long.parseLong(time.get(1)) * 1_000);
        assertThat(Duration.between(server, clock.instant()).abs()).isLessThan(Duration.ofSeconds(1));
        Instant first = clock.instant();
        assertThat(clock.instant()).as("monotonic between readings").isAfterOrEqualTo(first);
    }

    @Test
    void beforeRedisAnswersItReadsTheFallbackAndAfterwardsGoesOnFromItsLastReading() {
        URI target = URI.create(TestServices.redisUrl());
        try (TcpProxy proxy = TcpProxy.start(target.getHost(), target.getPort() > 0 ? target.getPort() : 6379)) {
            RedisClient client = RedisClient.create(TcpProxy.redirectRedisUrl(TestServices.redisUrl(), proxy));
            client.setDefaultTimeout(Duration.ofSeconds(1));
            try (StatefulRedisConnection<String, String> connection = client.connect()) {
                RedisClock clock = new RedisClock(connection.sync(), LONG_AGO, Duration.ZERO);
                proxy.cut();
                assertThat(clock.instant()).as("never read Redis: this process's clock").isEqualTo(LONG_AGO.instant());
                proxy.restore();
                await().atMost(Duration.ofSeconds(30)).until(() -> clock.instant().isAfter(Instant.parse("2020-01-01T00:00:00Z")));
                proxy.cut();
                // Every call reads again (resample 0) and fails: the last reading goes on, not the fallback.
                assertThat(clock.instant()).isAfter(Instant.parse("2020-01-01T00:00:00Z"));
                proxy.restore();
            } finally {
                client.shutdown();
            }
        }
    }

    @Test
    void theBudgetLedgerNamesItsPeriodsByTheRedisClockNotBySkewedProcessClock() {
        // A worker whose clock is a day ahead (KAGE_CLOCK_OFFSET_MS) must charge today's pools, as every other does.
        Clock dayAhead = Clock.offset(Clock.systemUTC(), Duration.ofDays(1));
        BudgetLedger ledger = new KageFactory().budgetLedger(redis.keys(), redis.redis(), KageSettings.load(Env.of(Map.of())),
                dayAhead);
        List<String> time = redis.redis().time();
        Instant server = Instant.ofEpochSecond(Long.parseLong(time.get(0)));
        assertThat(ledger.tenantPools("acme").getFirst().pool().period()).isIn(Period.DAY.id(server),
                Period.DAY.id(server.plusSeconds(5)));
    }
}
