package dev.kage.events;

import dev.kage.redis.KageKeys;
import io.lettuce.core.XAddArgs;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Appends lifecycle events (task submitted, job started, job finished) to the capped stream
 * {@code kage:events}, for dashboards and server-sent events. Thread-safe.
 */
public final class EventLog {
    /** Roughly how many events the stream keeps; older ones are trimmed. */
    public static final long MAX_EVENTS = 10_000;

    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private final Clock clock;

    public EventLog(KageKeys keys, RedisCommands<String, String> redis, Clock clock) {
        this.keys = keys;
        this.redis = redis;
        this.clock = clock;
    }

    /**
     * @param type   e.g. {@code task.submitted}, {@code job.started}, {@code job.finished}
     * @param fields event data; null values are left out
     */
    public void publish(String type, Map<String, String> fields) {
        redis.xadd(keys.events(), XAddArgs.Builder.maxlen(MAX_EVENTS).approximateTrimming(), body(type, fields));
    }

    /** {@link #publish} on a pipeline's connection, for a caller that sends it with other commands. */
    public io.lettuce.core.RedisFuture<String> publish(io.lettuce.core.api.async.RedisAsyncCommands<String, String> async, String type,
                                                       Map<String, String> fields) {
        return async.xadd(keys.events(), XAddArgs.Builder.maxlen(MAX_EVENTS).approximateTrimming(), body(type, fields));
    }

    /** Publishes many events of one type, pipelined. */
    public void publishAll(String type, java.util.List<Map<String, String>> events) {
        var async = redis.getStatefulConnection().async();
        var replies = new java.util.ArrayList<io.lettuce.core.RedisFuture<String>>(events.size());
        for (Map<String, String> fields : events) {
            replies.add(async.xadd(keys.events(), XAddArgs.Builder.maxlen(MAX_EVENTS).approximateTrimming(), body(type, fields)));
        }
        for (var reply : replies) {
            try {
                reply.get(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new io.lettuce.core.RedisCommandInterruptedException(e);
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                throw new io.lettuce.core.RedisException("publishing events failed: " + e.getMessage(), e);
            }
        }
    }

    private Map<String, String> body(String type, Map<String, String> fields) {
        Map<String, String> body = new LinkedHashMap<>();
        body.put("type", type);
        body.put("at", clock.instant().toString());
        fields.forEach((k, v) -> {
            if (v != null) {
                body.put(k, v);
            }
        });
        return body;
    }
}
