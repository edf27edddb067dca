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
     * Publishes many events of one type and shape, in order: one script call per {@value #PUBLISH_CHUNK} events
     * (publish-many.lua), where a command per event cost each its own encoding and reply; the calls pipelined
     * ({@link dev.kage.redis.LuaScript#sendAll}). Each entry is what {@link #publish} writes: {@code type}, {@code at}
     * (one time for the whole publish: the events are of one moment, a batch), then the fields whose value is not null.
     * Does not wait: {@code await()} on what it returns waits for the replies.
     *
     * @param names  the events' field names, neither {@code type} nor {@code at}
     * @param events each event's values, in the order of {@code names} (null: the field is left out)
     * @throws IllegalArgumentException when a name is {@code type} or {@code at}, or an event has more values than names
     */
    public dev.kage.redis.LuaScript.Sent<Long> sendPublishAll(String type, java.util.List<String> names,
                                                              java.util.List<String[]> events) {
        if (names.contains("type") || names.contains("at")) {
            throw new IllegalArgumentException("an event's type and at are its own: " + names);
        }
        dev.kage.redis.LuaScript.Names encodedNames = new dev.kage.redis.LuaScript.Names(names);
        String at = clock.instant().toString();
        java.util.List<dev.kage.redis.LuaScript.Call> calls = new java.util.ArrayList<>();
        for (int from = 0; from < events.size(); from += PUBLISH_CHUNK) {
            calls.add(publishCall(type, at, encodedNames,
                    events.subList(from, Math.min(from + PUBLISH_CHUNK, events.size()))));
        }
        return PUBLISH_MANY.sendAll(redis, io.lettuce.core.ScriptOutputType.INTEGER, calls);
    }

    /** {@code type} and {@code at}, encoded once. */
    private static final dev.kage.redis.LuaScript.Names OWN_NAMES = new dev.kage.redis.LuaScript.Names(java.util.List.of("type", "at"));

    /**
     * One publish-many.lua call. Small loops of small steps, as {@code JobQueue}'s enqueue calls: a loop over maps with
     * a callback per field, inlined whole, took C2 about 300 ms to compile (JFR, session 18).
     */
    private dev.kage.redis.LuaScript.Call publishCall(String type, String at, dev.kage.redis.LuaScript.Names names,
                                                      java.util.List<String[]> chunk) {
        var call = new dev.kage.redis.LuaScript.Call(new String[] {keys.events()}, 160 * chunk.size()).arg(MAX_EVENTS);
        for (String[] values : chunk) {
            if (values.length > names.size()) {
                throw new IllegalArgumentException(values.length + " values for " + names.size() + " names");
            }
            int present = 0;
            for (String value : values) {
                present += value == null ? 0 : 1;
            }
            call.arg(2L * (2 + present)).pair(OWN_NAMES, 0, type).pair(OWN_NAMES, 1, at);
            for (int i = 0; i < values.length; i++) {
                if (values[i] != null) {
                    call.pair(names, i, values[i]);
                }
            }
        }
        return call;
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
