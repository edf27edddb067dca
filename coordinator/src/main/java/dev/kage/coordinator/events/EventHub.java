package dev.kage.coordinator.events;

import dev.kage.KageException;
import dev.kage.redis.KageKeys;
import dev.kage.redis.Utf8Codec;
import io.lettuce.core.Limit;
import io.lettuce.core.Range;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.XReadArgs;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Sinks;
import reactor.util.concurrent.Queues;

/**
 * Tails the lifecycle stream {@code kage:events} once for the whole coordinator and hands each new entry
 * to every subscriber whose filter accepts it, however many clients are listening.
 *
 * <p>One platform thread reads with {@code XREAD BLOCK} on a connection of its own (the shared connection
 * must never block), with a command timeout a little longer than the block time. A Redis error is logged
 * once per outage; the thread then drops the connection and tries a new one every second, reading on from
 * the last entry it handed out, so nothing published during an outage is skipped. Each subscriber has a
 * bounded buffer; a subscriber that falls {@value #SUBSCRIBER_BUFFER} events behind is ended with an error
 * (an SSE client resumes with {@code Last-Event-ID}) instead of growing without limit.
 *
 * <p>Thread-safe. {@link #start()} once, {@link #close()} at shutdown.
 */
public final class EventHub implements AutoCloseable {
    /** How long one {@code XREAD} waits for new entries. */
    public static final Duration BLOCK = Duration.ofSeconds(2);
    /** The hub connection's command timeout: a read that has not answered by then is lost. */
    public static final Duration READ_TIMEOUT = BLOCK.plusSeconds(3);
    /** Pause after a Redis error before reading again. */
    public static final Duration ERROR_PAUSE = Duration.ofSeconds(1);
    /** Events one subscriber may have waiting before it is ended. */
    public static final int SUBSCRIBER_BUFFER = 1024;

    private static final Logger LOG = LoggerFactory.getLogger(EventHub.class);
    private static final int BATCH = 256;

    private final RedisClient client;
    private final RedisURI uri;
    private final String stream;
    private final String name;
    private final Set<Subscription> subscriptions = ConcurrentHashMap.newKeySet();
    private final ConcurrentHashMap<String, Integer> perTenant = new ConcurrentHashMap<>();
    private final int maxPerTenant;
    private final CountDownLatch stopping = new CountDownLatch(1);
    private final Object lock = new Object();
    private final Thread thread;

    private volatile boolean running = true;
    private volatile boolean reading;
    private StatefulRedisConnection<String, String> connection; // guarded by lock
    private volatile String lastId;

    /**
     * @param redisUrl the Redis the client serves; the hub's connection is named {@code <namespace>-event-hub}
     *                 in {@code CLIENT LIST}, also after a reconnect
     */
    public EventHub(RedisClient client, String redisUrl, KageKeys keys) {
        this(client, redisUrl, keys, DEFAULT_MAX_STREAMS_PER_TENANT);
    }

    /**
     * @param maxPerTenant subscriptions (event streams) one tenant may hold on this coordinator at once
     *                     ({@code KAGE_MAX_EVENT_STREAMS_PER_TENANT}); {@link #subscribe(String, Predicate)} refuses more
     */
    public EventHub(RedisClient client, String redisUrl, KageKeys keys, int maxPerTenant) {
        this.maxPerTenant = maxPerTenant;
        this.client = client;
        this.stream = keys.events();
        this.name = keys.namespace() + "-event-hub";
        this.uri = RedisURI.builder(RedisURI.create(redisUrl)).withClientName(name).build();
        this.thread = Thread.ofPlatform().name(name).daemon(true).unstarted(this::run);
    }

    /**
     * Starts tailing after the stream's newest entry. That position is taken before this returns, so a
     * subscriber that subscribes and then reads the stream's past misses nothing in between.
     */
    public void start() {
        try {
            List<StreamMessage<String, String>> newest = connection().sync().xrevrange(stream, Range.create("-", "+"),
                    Limit.from(1));
            lastId = newest.isEmpty() ? StreamIds.ZERO : newest.get(0).getId();
        } catch (RedisException e) {
            // Without a position, hand out the whole (capped) stream once Redis answers: subscribers
            // drop what they have already seen, so this can only repeat nothing, never lose anything.
            LOG.warn("Event hub: cannot read {} at start ({}); will start from its oldest entry", stream, e.getMessage());
            lastId = StreamIds.ZERO;
        }
        thread.start();
    }

    /**
     * Registers a subscriber. Events the filter accepts are buffered from now on, until the returned
     * subscription's {@link Subscription#events()} is consumed or it is closed.
     *
     * @param filter runs on the hub's thread; must be fast and must not block
     */
    public Subscription subscribe(Predicate<StreamEvent> filter) {
        Subscription subscription = new Subscription(null, filter);
        subscriptions.add(subscription);
        return subscription;
    }

    /**
     * {@link #subscribe(Predicate)} for a tenant's event stream, counted against the tenant's {@code maxPerTenant}:
     * each stream holds a buffer here and asks Postgres at every keep-alive, and the blocking threads and the pool
     * those queries share serve every tenant's submits.
     *
     * @throws TooManyStreamsException when the tenant holds {@code maxPerTenant} streams already (a 429)
     */
    public Subscription subscribe(String tenant, Predicate<StreamEvent> filter) {
        int held = perTenant.merge(tenant, 1, Integer::sum);
        if (held > maxPerTenant) {
            perTenant.computeIfPresent(tenant, (t, count) -> count > 1 ? count - 1 : null);
            throw new TooManyStreamsException(maxPerTenant);
        }
        Subscription subscription = new Subscription(tenant, filter);
        subscriptions.add(subscription);
        return subscription;
    }

    /** Event streams a tenant holds now. */
    public int streams(String tenant) {
        return perTenant.getOrDefault(tenant, 0);
    }

    /** {@code KAGE_MAX_EVENT_STREAMS_PER_TENANT} when unset. */
    public static final int DEFAULT_MAX_STREAMS_PER_TENANT = 500;

    /**
     * {@code KAGE_MAX_EVENT_STREAMS_PER_TENANT}, checked.
     *
     * @throws dev.kage.config.ConfigException naming the variable
     */
    public static int maxStreamsPerTenant(dev.kage.config.Env env) {
        return env.intBetween("KAGE_MAX_EVENT_STREAMS_PER_TENANT", 1, 1_000_000, DEFAULT_MAX_STREAMS_PER_TENANT);
    }

    /** A tenant asked for one event stream more than it may hold at once on this coordinator. */
    public static final class TooManyStreamsException extends KageException {
        public TooManyStreamsException(int max) {
            super("this tenant holds " + max + " event streams on this coordinator already (KAGE_MAX_EVENT_STREAMS_PER_TENANT); "
                    + "close one, or follow every task of the tenant on one stream: GET /api/v1/events", false);
        }
    }

    /** Subscribers registered now, for tests and metrics. */
    public int subscribers() {
        return subscriptions.size();
    }

    /** The id of the newest entry handed out (or the start position). */
    public String position() {
        return lastId;
    }

    /** True while the last read of the stream succeeded. */
    public boolean reading() {
        return reading;
    }

    /** Stops the thread, closes the connection and completes every subscriber's events. */
    @Override
    public void close() {
        StatefulRedisConnection<String, String> open;
        synchronized (lock) {
            running = false;
            open = connection;
            connection = null;
        }
        stopping.countDown();
        if (open != null) {
            // Ends a blocked XREAD at once instead of after BLOCK.
            open.closeAsync();
        }
        try {
            thread.join(BLOCK.plusSeconds(1).toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Subscription subscription : subscriptions) {
            subscription.sink.tryEmitComplete();
        }
        subscriptions.clear();
        perTenant.clear();
    }

    private void run() {
        boolean failing = false;
        while (running) {
            try {
                List<StreamMessage<String, String>> batch = connection().sync().xread(
                        XReadArgs.Builder.block(BLOCK).count(BATCH), XReadArgs.StreamOffset.from(stream, lastId));
                reading = true;
                if (failing) {
                    LOG.info("Event hub: reading {} again, after entry {}", stream, lastId);
                    failing = false;
                }
                if (batch != null) {
                    for (StreamMessage<String, String> message : batch) {
                        lastId = message.getId();
                        dispatch(new StreamEvent(message.getId(), message.getBody()));
                    }
                }
                reapUnclaimed();
            } catch (RedisException e) {
                reading = false;
                if (!running) {
                    break;
                }
                // A fresh connection per attempt: Lettuce's own reconnect backs off up to 30 s.
                dropConnection();
                if (!failing) {
                    LOG.warn("Event hub: cannot read {} ({}); retrying every {} s from entry {}", stream, e.getMessage(),
                            ERROR_PAUSE.toSeconds(), lastId);
                    failing = true;
                }
                pause();
            } catch (RuntimeException e) {
                reading = false;
                // Anything else is a bug; the hub must outlive it, or every SSE client goes quiet.
                LOG.error("Event hub: unexpected failure reading {}; retrying from entry {}", stream, lastId, e);
                pause();
            }
        }
    }

    private StatefulRedisConnection<String, String> connection() {
        synchronized (lock) {
            if (!running) {
                throw new RedisException("event hub is closed");
            }
            if (connection == null) {
                connection = client.connect(Utf8Codec.INSTANCE, uri);
                connection.setTimeout(READ_TIMEOUT);
            }
            return connection;
        }
    }

    private void dropConnection() {
        StatefulRedisConnection<String, String> dropped;
        synchronized (lock) {
            dropped = connection;
            connection = null;
        }
        if (dropped != null) {
            dropped.closeAsync();
        }
    }

    /**
     * Closes the subscriptions whose events nobody has subscribed to for {@link #unclaimedAfter}: a response whose body
     * the server never streamed (its client hung up while the past was read) kept its subscription, and its place in
     * the tenant's count of streams, for good.
     */
    private void reapUnclaimed() {
        long now = System.nanoTime();
        for (Subscription subscription : subscriptions) {
            if (!subscription.claimed && now - subscription.created > unclaimedAfter.toNanos()) {
                LOG.debug("Event hub: closing a subscription of tenant {} whose events nobody read", subscription.tenant);
                subscription.sink.tryEmitComplete();
                subscription.close();
            }
        }
    }

    /** How long a subscription may wait for its events to be read before the hub closes it. */
    private volatile Duration unclaimedAfter = Duration.ofMinutes(1);

    /** For tests: a shorter {@link #unclaimedAfter}. */
    void unclaimedAfter(Duration after) {
        this.unclaimedAfter = after;
    }

    private void dispatch(StreamEvent event) {
        for (Subscription subscription : subscriptions) {
            subscription.offer(event);
        }
    }

    private void pause() {
        try {
            stopping.await(ERROR_PAUSE.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            running = false;
        }
    }

    /** One subscriber's filtered, buffered view of the stream from the moment it subscribed. */
    public final class Subscription implements AutoCloseable {
        private final String tenant;
        private final Predicate<StreamEvent> filter;
        private final long created = System.nanoTime();
        private volatile boolean claimed;
        private final Sinks.Many<StreamEvent> sink =
                Sinks.many().unicast().onBackpressureBuffer(Queues.<StreamEvent>get(SUBSCRIBER_BUFFER).get());

        private Subscription(String tenant, Predicate<StreamEvent> filter) {
            this.tenant = tenant;
            this.filter = filter;
        }

        /** The accepted events, starting with those buffered since subscribing; consume it once. */
        public Flux<StreamEvent> events() {
            return sink.asFlux().doOnSubscribe(s -> claimed = true).doFinally(signal -> close());
        }

        /** Stops buffering; the hub forgets this subscriber. */
        @Override
        public void close() {
            if (subscriptions.remove(this) && tenant != null) {
                perTenant.computeIfPresent(tenant, (t, held) -> held > 1 ? held - 1 : null);
            }
        }

        // Only the hub's thread emits, so emissions are serial as Sinks require.
        private void offer(StreamEvent event) {
            if (!filter.test(event)) {
                return;
            }
            Sinks.EmitResult result = sink.tryEmitNext(event);
            if (result == Sinks.EmitResult.FAIL_OVERFLOW) {
                LOG.warn("Event hub: a subscriber fell {} events behind at {}; ending its stream", SUBSCRIBER_BUFFER,
                        event.id());
                sink.tryEmitError(new SubscriberOverflowException(event.id()));
                close();
            } else if (result.isFailure()) {
                close();
            }
        }
    }

    /** A subscriber read too slowly and was ended; it may resume after the last event it received. */
    public static final class SubscriberOverflowException extends KageException {
        public SubscriberOverflowException(String atId) {
            super("subscriber fell " + SUBSCRIBER_BUFFER + " events behind at stream entry " + atId, true);
        }
    }
}
