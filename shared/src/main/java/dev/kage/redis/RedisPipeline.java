package dev.kage.redis;

import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandInterruptedException;
import io.lettuce.core.RedisCommandTimeoutException;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.async.RedisAsyncCommands;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Group commit for Redis commands: what many threads want sent goes out together, with one socket write for all of it,
 * on a connection of the pipeline's own. A caller hands over a function that issues its commands on that connection's
 * asynchronous API; one writer thread runs every function that waits when it is free (at most {@value #MAX_BATCH}),
 * flushes once and goes on, while the replies complete each caller's future on Lettuce's event loop. Under light load
 * a flush carries one caller's commands, so nothing waits for a timer; under heavy load one flush carries many.
 *
 * <p>Why: a synchronous command costs the calling thread a park and an unpark and Lettuce a write per command (about
 * 35 µs of CPU each, measured in BENCHMARKS.md); a job's bookkeeping is several. Here a caller parks once per
 * submission however many commands it holds, and the writes of all callers are shared.
 *
 * <p>Commands of one submission, and submissions in the order they were handed over, reach Redis in that order (one
 * connection, one writer). A function runs on the writer thread and must only issue commands (no blocking calls).
 * Replies time out as the client's {@code TimeoutOptions} say; while Redis is away commands wait in Lettuce's
 * reconnect buffer as on any connection. A pipeline made while Redis is down connects when first used (each flush tries
 * once; until one succeeds its submissions fail with the connect error). Thread-safe.
 */
public final class RedisPipeline implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(RedisPipeline.class);
    /** Submissions one flush carries at most. */
    static final int MAX_BATCH = 512;
    /** How long {@link #call} waits for a reply beyond the client's own command timeout. */
    private static final Duration WAIT_MARGIN = Duration.ofSeconds(5);

    private final RedisClient client;
    /** Set once the first connect succeeded; Lettuce reconnects it by itself from then on. Writer thread only, but read at close. */
    private volatile StatefulRedisConnection<String, String> connection;
    private RedisAsyncCommands<String, String> async;
    private final Duration timeout;
    private final BlockingQueue<Submission<?>> pending = new LinkedBlockingQueue<>();
    private final Thread writer;
    private volatile boolean closed;

    /**
     * Opens the pipeline's connection and starts its writer thread.
     *
     * @param commandTimeout the client's command timeout ({@code TimeoutOptions}); {@link #call} waits a little longer
     */
    public RedisPipeline(RedisClient client, String name, Duration commandTimeout) {
        this.client = client;
        this.timeout = commandTimeout.plus(WAIT_MARGIN);
        try {
            connect();
        } catch (RedisException e) {
            // Redis is down at start: the writer connects when the first submission comes (a process may start first).
            LOG.warn("Redis pipeline {}: no connection yet ({}); connecting when it is first used", name, e.getMessage());
        }
        this.writer = Thread.ofPlatform().daemon().name("kage-redis-pipeline-" + name).start(this::writeLoop);
    }

    /** Opens the connection, unless open. Lettuce's reconnects only cover a connection that once succeeded. */
    private synchronized void connect() {
        if (connection == null) {
            StatefulRedisConnection<String, String> opened = client.connect(Utf8Codec.INSTANCE);
            opened.setAutoFlushCommands(false);
            async = opened.async();
            connection = opened;
        }
    }

    /**
     * Sends the commands {@code commands} issues with the next flush, without waiting.
     *
     * @param commands issues commands on the pipeline's connection and returns what the caller waits for (e.g. one
     *                 command's future, or {@link #all} of several)
     * @return completes with the reply, or exceptionally with Redis's error or a timeout
     */
    public <T> CompletableFuture<T> send(Function<RedisAsyncCommands<String, String>, ? extends CompletionStage<T>> commands) {
        Submission<T> submission = new Submission<>(commands, new CompletableFuture<>());
        if (closed) {
            submission.done().completeExceptionally(new RedisException("the Redis pipeline is closed"));
            return submission.done();
        }
        pending.add(submission);
        if (closed) {
            failWaiting();
        }
        return submission.done();
    }

    /**
     * {@link #send} and wait for the reply. Waits through nothing: an interrupt ends the wait (the commands may still
     * run), as a synchronous Lettuce call would.
     *
     * @throws RedisException Redis's error, {@link RedisCommandTimeoutException} or {@link RedisCommandInterruptedException}
     */
    public <T> T call(Function<RedisAsyncCommands<String, String>, ? extends CompletionStage<T>> commands) {
        return await(send(commands));
    }

    /** Waits for a future from {@link #send}, as {@link #call} does. */
    public <T> T await(CompletableFuture<T> reply) {
        try {
            return reply.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RedisCommandInterruptedException(e);
        } catch (TimeoutException e) {
            throw new RedisCommandTimeoutException("no reply from Redis in " + timeout.toMillis() + " ms (pipelined)");
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RedisException redis) {
                throw redis;
            }
            throw new RedisException(cause.getMessage(), cause);
        }
    }

    /** Completes when every one of {@code replies} has; exceptionally with the first failure. */
    public static CompletableFuture<Void> all(CompletionStage<?>... replies) {
        CompletableFuture<?>[] futures = new CompletableFuture<?>[replies.length];
        for (int i = 0; i < replies.length; i++) {
            futures[i] = replies[i].toCompletableFuture();
        }
        return CompletableFuture.allOf(futures);
    }

    private void writeLoop() {
        List<Submission<?>> batch = new ArrayList<>(MAX_BATCH);
        while (!closed) {
            try {
                batch.add(pending.take());
            } catch (InterruptedException e) {
                break;
            }
            pending.drainTo(batch, MAX_BATCH - 1);
            try {
                connect();
            } catch (RedisException e) {
                batch.forEach(submission -> submission.done().completeExceptionally(e));
                batch.clear();
                continue;
            }
            for (Submission<?> submission : batch) {
                submission.issue(async);
            }
            try {
                connection.flushCommands();
            } catch (RuntimeException e) {
                // Lettuce fails the written commands' futures itself; nothing is lost here, only logged.
                LOG.warn("Flushing pipelined Redis commands failed: {}", e.toString());
            }
            batch.clear();
        }
        failWaiting();
    }

    private void failWaiting() {
        Submission<?> left;
        while ((left = pending.poll()) != null) {
            left.done().completeExceptionally(new RedisException("the Redis pipeline is closed"));
        }
    }

    /** Stops the writer (what waits is failed) and closes the connection. */
    @Override
    public void close() {
        closed = true;
        writer.interrupt();
        try {
            writer.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (this) {
            if (connection != null) {
                connection.close();
            }
        }
    }

    private record Submission<T>(Function<RedisAsyncCommands<String, String>, ? extends CompletionStage<T>> commands,
                                 CompletableFuture<T> done) {
        void issue(RedisAsyncCommands<String, String> async) {
            try {
                commands.apply(async).whenComplete((value, error) -> {
                    if (error != null) {
                        done.completeExceptionally(error instanceof java.util.concurrent.CompletionException c && c.getCause() != null
                                ? c.getCause() : error);
                    } else {
                        done.complete(value);
                    }
                });
            } catch (RuntimeException e) {
                done.completeExceptionally(e);
            }
        }
    }
}
