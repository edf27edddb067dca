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
    private static final dev.kage.redis.LuaScript PUBLISH_MANY = dev.kage.redis.LuaScript.load(EventLog.class, "publish-many.lua");

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

    /** Events one publish-many.lua call appends at most (about a millisecond of Redis's time). */
    static final int PUBLISH_CHUNK = 200;

    /**
     * Publishes many events of one type, in order: one script call per {@value #PUBLISH_CHUNK} events
     * (publish-many.lua), where a command per event cost each its own encoding and reply; the calls pipelined
     * ({@link dev.kage.redis.LuaScript#sendAll}). Does not wait: {@code await()} on what it returns waits for the replies.
     */
    public dev.kage.redis.LuaScript.Sent<Long> sendPublishAll(String type, java.util.List<Map<String, String>> events) {
        java.util.List<dev.kage.redis.LuaScript.Call> calls = new java.util.ArrayList<>();
        // One time for the whole publish: the events are of one moment (a batch), and formatting it is not free.
        String at = clock.instant().toString();
        for (int from = 0; from < events.size(); from += PUBLISH_CHUNK) {
            java.util.List<Map<String, String>> chunk = events.subList(from, Math.min(from + PUBLISH_CHUNK, events.size()));
            var call = new dev.kage.redis.LuaScript.Call(new String[] {keys.events()}, 160 * chunk.size()).arg(MAX_EVENTS);
            for (Map<String, String> fields : chunk) {
                // As body() has it: type and at first (a field of that name, with a value, replaces them in their
                // place), then the other fields that have a value.
                long others = fields.entrySet().stream()
                        .filter(field -> field.getValue() != null && !OWN_FIELDS.contains(field.getKey())).count();
                call.arg(2 * (2 + others)).arg("type").arg(valueOr(fields, "type", type)).arg("at").arg(valueOr(fields, "at", at));
                fields.forEach((name, value) -> {
                    if (value != null && !OWN_FIELDS.contains(name)) {
                        call.arg(name).arg(value);
                    }
                });
            }
            calls.add(call);
        }
        return PUBLISH_MANY.sendAll(redis, io.lettuce.core.ScriptOutputType.INTEGER, calls);
    }

    /** The fields every event has, written first. */
    private static final java.util.Set<String> OWN_FIELDS = java.util.Set.of("type", "at");

    private static String valueOr(Map<String, String> fields, String name, String otherwise) {
        String value = fields.get(name);
        return value == null ? otherwise : value;
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
