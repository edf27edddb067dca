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
                // As body() has it: type and at first, then the fields that have a value (a field named type or at
                // replaces those, in their place).
                Map<String, String> body = fields.containsKey("type") || fields.containsKey("at") ? body(type, fields, at) : null;
                if (body != null) {
                    call.arg(2L * body.size());
                    body.forEach((name, value) -> call.arg(name).arg(value));
                    continue;
                }
                long present = 2;
                for (String value : fields.values()) {
                    if (value != null) {
                        present++;
                    }
                }
                call.arg(2 * present).arg("type").arg(type).arg("at").arg(at);
                fields.forEach((name, value) -> {
                    if (value != null) {
                        call.arg(name).arg(value);
                    }
                });
            }
            calls.add(call);
        }
        return PUBLISH_MANY.sendAll(redis, io.lettuce.core.ScriptOutputType.INTEGER, calls);
    }

    private Map<String, String> body(String type, Map<String, String> fields) {
        return body(type, fields, clock.instant().toString());
    }

    private static Map<String, String> body(String type, Map<String, String> fields, String at) {
        Map<String, String> body = new LinkedHashMap<>();
        body.put("type", type);
        body.put("at", at);
        fields.forEach((k, v) -> {
            if (v != null) {
                body.put(k, v);
            }
        });
        return body;
    }
}
