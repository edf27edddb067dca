package dev.kage.redis;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kage.testing.PrivateRedis;
import dev.kage.testing.RedisFixture;
import io.lettuce.core.ClientOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisCommandInterruptedException;
import io.lettuce.core.RedisException;
import io.lettuce.core.TimeoutOptions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@link RedisPipeline} against the real Redis: many callers at once, order, errors, interrupts, close, a restart. */
class RedisPipelineTest {
    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void close() {
        redis.close();
    }

    @Test
    void manyThreadsAtOnceEachGetTheirOwnRepliesAndTheirCommandsArriveInOrder() throws Exception {
        RedisPipeline pipeline = redis.pipeline();
        String counter = redis.namespace() + ":counter";
        int threads = 64;
        int each = 300;
        CountDownLatch go = new CountDownLatch(1);
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<List<Long>>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                String list = redis.namespace() + ":list:" + t;
                futures.add(pool.submit(() -> {
                    go.await();
                    List<Long> lengths = new ArrayList<>();
                    for (int i = 0; i < each; i++) {
                        String value = Integer.toString(i);
                        // Two commands in one submission: the reply is the second's, after the first.
                        lengths.add(pipeline.call(r -> {
                            r.incr(counter);
                            return r.rpush(list, value);
                        }));
                    }
                    return lengths;
                }));
            }
            go.countDown();
            for (Future<List<Long>> future : futures) {
                List<Long> lengths = future.get(60, TimeUnit.SECONDS);
                // Each caller saw its own list grow one by one: replies reached the right caller.
                for (int i = 0; i < each; i++) {
                    assertThat(lengths.get(i)).isEqualTo(i + 1L);
                }
            }
        }
        assertThat(redis.redis().get(counter)).isEqualTo(Long.toString((long) threads * each));
        for (int t = 0; t < threads; t++) {
            List<String> values = redis.redis().lrange(redis.namespace() + ":list:" + t, 0, -1);
            assertThat(values).hasSize(each);
            for (int i = 0; i < each; i++) {
                assertThat(values.get(i)).isEqualTo(Integer.toString(i));
            }
        }
    }

    @Test
    void submissionsSentWithoutWaitingKeepTheirOrder() {
        RedisPipeline pipeline = redis.pipeline();
        String list = redis.namespace() + ":ordered";
        List<CompletableFuture<Long>> replies = new ArrayList<>();
        for (int i = 0; i < 2_000; i++) {
            String value = Integer.toString(i);
            replies.add(pipeline.send(r -> r.rpush(list, value)));
        }
        for (int i = 0; i < replies.size(); i++) {
            assertThat(pipeline.await(replies.get(i))).isEqualTo(i + 1L);
        }
    }

    @Test
    void aFailingCommandFailsOnlyItsCallerAndTheRestGoOn() {
        RedisPipeline pipeline = redis.pipeline();
        String text = redis.namespace() + ":text";
        String number = redis.namespace() + ":number";
        redis.redis().set(text, "not a number");
        CompletableFuture<Long> bad = pipeline.send(r -> r.incr(text));
        CompletableFuture<Long> good = pipeline.send(r -> r.incr(number));
        CompletableFuture<Long> thrown = pipeline.send(r -> {
            throw new IllegalStateException("a caller's own bug");
        });
        assertThatThrownBy(() -> pipeline.await(bad)).isInstanceOf(RedisCommandExecutionException.class)
                .hasMessageContaining("not an integer");
        assertThat(pipeline.await(good)).isEqualTo(1L);
        assertThatThrownBy(() -> pipeline.await(thrown)).isInstanceOf(RedisException.class).hasMessageContaining("a caller's own bug");
        // One of several commands failing fails the submission (all), after the others ran.
        assertThatThrownBy(() -> pipeline.call(r -> RedisPipeline.all(r.incr(number), r.incr(text), r.incr(number))))
                .isInstanceOf(RedisCommandExecutionException.class);
        assertThat(redis.redis().get(number)).isEqualTo("3");
    }

    @Test
    void anInterruptedCallerStopsWaitingAndKeepsItsInterrupt() throws Exception {
        RedisPipeline pipeline = redis.pipeline();
        String list = redis.namespace() + ":blocked";
        AtomicReference<Throwable> thrown = new AtomicReference<>();
        AtomicReference<Boolean> flag = new AtomicReference<>();
        // BLPOP on the pipeline's connection holds the reply back for 3 s: the caller is interrupted while it waits.
        Thread caller = Thread.ofVirtual().start(() -> {
            try {
                pipeline.call(r -> r.blpop(3, list));
            } catch (RuntimeException e) {
                thrown.set(e);
                flag.set(Thread.currentThread().isInterrupted());
            }
        });
        // Whether the interrupt lands before or during the wait, the caller stops waiting the same way.
        caller.interrupt();
        caller.join(5_000);
        assertThat(thrown.get()).isInstanceOf(RedisCommandInterruptedException.class);
        assertThat(flag.get()).isTrue();
    }

    @Test
    void afterCloseSubmissionsFailInsteadOfWaitingForever() {
        RedisPipeline pipeline = new RedisPipeline(redis.client(), "closing", Duration.ofSeconds(10));
        Long first = pipeline.call(r -> r.incr(redis.namespace() + ":n"));
        assertThat(first).isEqualTo(1L);
        pipeline.close();
        assertThatThrownBy(() -> pipeline.call(r -> r.incr(redis.namespace() + ":n"))).isInstanceOf(RedisException.class)
                .hasMessageContaining("closed");
    }

    @Test
    void aRestartedRedisIsReachedAgainWithoutANewPipeline() throws Exception {
        assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis server = PrivateRedis.start(false)) {
            RedisClient client = RedisClient.create(server.url());
            client.setOptions(ClientOptions.builder().autoReconnect(true).timeoutOptions(TimeoutOptions.enabled(Duration.ofSeconds(5))).build());
            RedisPipeline pipeline = new RedisPipeline(client, "restart", Duration.ofSeconds(5));
            try {
                Long first = pipeline.call(r -> r.incr("n"));
                assertThat(first).isEqualTo(1L);
                server.restart();
                // Lettuce reconnects in the background; a command sent meanwhile waits in its buffer or times out.
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                Long value = null;
                while (value == null && System.nanoTime() < deadline) {
                    try {
                        value = pipeline.call(r -> r.incr("m"));
                    } catch (RedisException notYet) {
                        // Reconnecting: ask again.
                    }
                }
                assertThat(value).isEqualTo(1L);
            } finally {
                pipeline.close();
                client.shutdown();
            }
        }
    }

    @Test
    void aPipelineMadeWhileRedisIsDownFailsItsCallersThenConnectsWhenRedisAnswers() throws Exception {
        assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis server = PrivateRedis.start(false)) {
            server.stop();
            RedisClient client = RedisClient.create(server.url());
            client.setOptions(ClientOptions.builder().autoReconnect(true).timeoutOptions(TimeoutOptions.enabled(Duration.ofSeconds(5))).build());
            RedisPipeline pipeline = new RedisPipeline(client, "late", Duration.ofSeconds(5));
            try {
                assertThatThrownBy(() -> pipeline.call(r -> r.incr("n"))).isInstanceOf(RedisException.class);
                server.restart();
                assertThat(pipeline.<Long>call(r -> r.incr("n"))).isEqualTo(1L);
                assertThat(pipeline.<Long>call(r -> r.incr("n"))).isEqualTo(2L);
            } finally {
                pipeline.close();
                client.shutdown();
            }
        }
    }
}
