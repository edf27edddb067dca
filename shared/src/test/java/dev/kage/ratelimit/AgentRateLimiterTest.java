package dev.kage.ratelimit;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.RedisFixture;
import dev.kage.testing.TestServices;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.redisson.Redisson;
import org.redisson.api.RedissonClient;
import org.redisson.config.Config;

class AgentRateLimiterTest {
    private final RedisFixture redis = new RedisFixture();
    private final List<RedissonClient> clients = new ArrayList<>();

    @AfterEach
    void cleanUp() {
        clients.forEach(RedissonClient::shutdown);
        redis.close();
    }

    @Test
    void twoWorkersWithTheirOwnClientsShareOneLimitForTheAgent() throws Exception {
        AgentRateLimiter workerA = new AgentRateLimiter(redis.keys(), client(), 8);
        AgentRateLimiter workerB = new AgentRateLimiter(redis.keys(), client(), 8);
        ExecutorService pool = Executors.newFixedThreadPool(8);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<Duration>> waits = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            AgentRateLimiter limiter = i % 2 == 0 ? workerA : workerB;
            waits.add(pool.submit(() -> {
                start.await();
                return limiter.acquire("claude-code");
            }));
        }
        start.countDown();
        for (Future<Duration> wait : waits) {
            wait.get();
        }
        pool.shutdown();
        assertThat(workerA.availablePermits("claude-code")).isZero();
        assertThat(workerB.availablePermits("claude-code")).isZero();
        assertThat(workerA.availablePermits("demo")).as("each agent has its own limit").isEqualTo(8);
        assertThat(redis.redis().exists(redis.keys().requestLimiter("claude-code"))).isEqualTo(1);
    }

    private RedissonClient client() {
        Config config = new Config();
        config.useSingleServer().setAddress(TestServices.redisUrl());
        RedissonClient client = Redisson.create(config);
        clients.add(client);
        return client;
    }
}
