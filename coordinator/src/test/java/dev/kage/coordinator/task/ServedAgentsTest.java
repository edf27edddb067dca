package dev.kage.coordinator.task;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.RedisFixture;
import io.lettuce.core.api.sync.RedisCommands;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * The served agents are read by one caller at a time: submits that find the reading stale while another is under
 * way answer from the previous one instead of each reading the heartbeats (the load scenario found every submit of a
 * 2 s window scanning at once). On the real Redis; the commands are wrapped only to count the readings.
 */
class ServedAgentsTest {
    @Test
    void callersThatFindTheReadingStaleWhileAnotherReadsAnswerFromThePreviousReading() throws Exception {
        try (RedisFixture fixture = new RedisFixture()) {
            RedisCommands<String, String> real = fixture.redis();
            real.hset(fixture.keys().worker("w1"), java.util.Map.of("agents", "noop,demo", "slots", "4", "busy", "0"));
            real.sadd(fixture.keys().workers(), "w1");
            AtomicInteger readings = new AtomicInteger();
            AtomicBoolean holdNext = new AtomicBoolean();
            CountDownLatch othersAnswered = new CountDownLatch(31);
            @SuppressWarnings("unchecked")
            RedisCommands<String, String> counting = (RedisCommands<String, String>) Proxy.newProxyInstance(
                    RedisCommands.class.getClassLoader(), new Class<?>[]{RedisCommands.class}, (proxy, method, args) -> {
                        if (method.getName().equals("smembers")) {
                            readings.incrementAndGet();
                            if (holdNext.getAndSet(false)) {
                                // this reading is "under way" until every other caller has answered
                                assertThat(othersAnswered.await(30, TimeUnit.SECONDS)).isTrue();
                            }
                        }
                        try {
                            return method.invoke(real, args);
                        } catch (InvocationTargetException e) {
                            throw e.getCause();
                        }
                    });
            // zero freshness: every call wants a new reading
            ServedAgents served = new ServedAgents(fixture.keys(), counting, Duration.ZERO);
            assertThat(served.served()).contains(Set.of("noop", "demo"));
            assertThat(readings).hasValue(1);

            holdNext.set(true);
            ExecutorService pool = Executors.newFixedThreadPool(32);
            try {
                List<Future<Optional<Set<String>>>> answers = new ArrayList<>();
                Future<Optional<Set<String>>> reader = pool.submit(served::served);
                // wait until that first caller is inside its SCAN before the others come
                org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> readings.get() == 2);
                for (int i = 0; i < 31; i++) {
                    answers.add(pool.submit(() -> {
                        try {
                            return served.served();
                        } finally {
                            othersAnswered.countDown();
                        }
                    }));
                }
                for (Future<Optional<Set<String>>> answer : answers) {
                    assertThat(answer.get(30, TimeUnit.SECONDS)).contains(Set.of("noop", "demo"));
                }
                assertThat(reader.get(30, TimeUnit.SECONDS)).contains(Set.of("noop", "demo"));
            } finally {
                pool.shutdownNow();
            }
            assertThat(readings).as("one reading for 32 callers at once").hasValue(2);
            assertThat(served.waiting("noop")).isEmpty();
            assertThat(served.waiting("codex")).isPresent();
        }
    }

    @Test
    void aHeartbeatWithAPidThatIsNoNumberIsReadWithoutOne() {
        // A hash written by hand or by another version: GET /api/v1/workers and every submit (which asks whether a live
        // worker serves its agents) answered 500 on it.
        try (RedisFixture fixture = new RedisFixture()) {
            RedisCommands<String, String> redis = fixture.redis();
            redis.hset(fixture.keys().worker("w1"), java.util.Map.of("agents", "demo", "slots", "2", "busy", "1", "pid", "12x"));
            redis.hset(fixture.keys().worker("w2"), java.util.Map.of("agents", "noop", "slots", "1", "busy", "0", "pid", "4242"));
            redis.sadd(fixture.keys().workers(), "w1", "w2");
            ServedAgents served = new ServedAgents(fixture.keys(), redis, Duration.ZERO);
            assertThat(served.workers()).extracting(ServedAgents.Worker::id, ServedAgents.Worker::pid)
                    .containsExactlyInAnyOrder(org.assertj.core.groups.Tuple.tuple("w1", null), org.assertj.core.groups.Tuple.tuple("w2", 4242L));
            assertThat(served.served()).contains(Set.of("demo", "noop"));
        }
    }
}
