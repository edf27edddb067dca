package dev.kage.redis;

import dev.kage.KageException;
import io.lettuce.core.RedisNoScriptException;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.output.BooleanOutput;
import io.lettuce.core.output.CommandOutput;
import io.lettuce.core.output.IntegerOutput;
import io.lettuce.core.output.NestedMultiOutput;
import io.lettuce.core.output.ObjectOutput;
import io.lettuce.core.output.StatusOutput;
import io.lettuce.core.output.ValueOutput;
import io.lettuce.core.protocol.CommandType;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * A Lua script from the classpath, run with {@code EVALSHA} and re-sent with {@code EVAL} when Redis
 * does not know it (after a restart or a {@code SCRIPT FLUSH}). Immutable and thread-safe.
 */
public final class LuaScript {
    private final String name;
    private final String text;
    private final String sha;
    /** The SHA-1 and the text as encoded arguments, for the calls of {@link #sendAll}. */
    private final byte[] encodedSha;
    private final byte[] encodedText;

    private LuaScript(String name, String text) {
        this.name = name;
        this.text = text;
        try {
            this.sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-1").digest(text.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        this.encodedSha = EncodedArgs.encodedOf(sha);
        this.encodedText = EncodedArgs.encodedOf(text);
    }

    /** Loads {@code name} from beside {@code owner} on the classpath. */
    public static LuaScript load(Class<?> owner, String name) {
        return new LuaScript(name, read(owner, name));
    }

    /** Loads {@code name} with {@code prelude} (helpers several scripts share) in front, both from beside {@code owner}. */
    public static LuaScript load(Class<?> owner, String prelude, String name) {
        return new LuaScript(name, read(owner, prelude) + "\n" + read(owner, name));
    }

    private static String read(Class<?> owner, String name) {
        try (InputStream in = owner.getResourceAsStream(name)) {
            if (in == null) {
                throw new KageException("Lua script " + name + " missing from the classpath beside " + owner.getName(), false);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new KageException("Lua script " + name + " unreadable", false, e);
        }
    }

    /** The script's SHA-1, as {@code EVALSHA} and {@code SCRIPT EXISTS} name it. */
    public String sha() {
        return sha;
    }

    /** Sends the script to Redis's script cache ({@code SCRIPT LOAD}), so its first {@link #run} needs no second round trip. */
    public void load(RedisCommands<String, String> redis) {
        redis.scriptLoad(text);
    }

    public <T> T run(RedisCommands<String, String> redis, ScriptOutputType type, String[] keys, String... args) {
        try {
            return redis.evalsha(sha, type, keys, args);
        } catch (RedisNoScriptException unknown) {
            return redis.eval(text, type, keys, args);
        }
    }

    /**
     * Runs the script once per call, pipelined: every {@code EVALSHA} is sent before the first reply is awaited, so
     * Redis runs one call while the next is encoded and on its way. A {@code SCRIPT LOAD} goes first in the same
     * pipeline, so the calls run in order even on a Redis that forgot the script (restarted); only a {@code SCRIPT FLUSH}
     * landing between them makes a call fail for not knowing it, and such a call is run again through {@link #run} after
     * the others. The calls are on their way when this returns; {@link Sent#await} collects the replies, so a caller
     * with two batches of calls sends both before awaiting either, and Redis runs the second while the first's replies
     * come back.
     *
     * @param calls each call's keys and arguments
     */
    public <T> Sent<T> sendAll(RedisCommands<String, String> redis, ScriptOutputType type, java.util.List<Call> calls) {
        var async = redis.getStatefulConnection().async();
        io.lettuce.core.RedisFuture<String> loaded = async.scriptLoad(text);
        java.util.List<io.lettuce.core.RedisFuture<T>> replies = new java.util.ArrayList<>(calls.size());
        for (Call call : calls) {
            replies.add(async.dispatch(CommandType.EVALSHA, output(type), call.arguments.behind(encodedSha)));
        }
        return new Sent<>(redis, type, calls, loaded, replies);
    }

    /** {@code call} with the script's text ({@code EVAL}), for a Redis that does not know the script. */
    <T> T eval(RedisCommands<String, String> redis, ScriptOutputType type, Call call) {
        return redis.dispatch(CommandType.EVAL, output(type), call.arguments.behind(encodedText));
    }

    /** The output Lettuce's own {@code evalsha} decodes a reply of {@code type} with. */
    @SuppressWarnings("unchecked")
    private static <T> CommandOutput<String, String, T> output(ScriptOutputType type) {
        Utf8Codec codec = Utf8Codec.INSTANCE;
        return (CommandOutput<String, String, T>) switch (type) {
            case BOOLEAN -> new BooleanOutput<>(codec);
            case INTEGER -> new IntegerOutput<>(codec);
            case STATUS -> new StatusOutput<>(codec);
            case MULTI -> new NestedMultiOutput<>(codec);
            case VALUE -> new ValueOutput<>(codec);
            case OBJECT -> new ObjectOutput<>(codec);
        };
    }

    /** Calls {@link #sendAll} sent; {@link #await} once, from one thread. */
    public final class Sent<T> {
        private final RedisCommands<String, String> redis;
        private final ScriptOutputType type;
        private final java.util.List<Call> calls;
        private final io.lettuce.core.RedisFuture<String> loaded;
        private final java.util.List<io.lettuce.core.RedisFuture<T>> replies;

        private Sent(RedisCommands<String, String> redis, ScriptOutputType type, java.util.List<Call> calls,
                     io.lettuce.core.RedisFuture<String> loaded, java.util.List<io.lettuce.core.RedisFuture<T>> replies) {
            this.redis = redis;
            this.type = type;
            this.calls = calls;
            this.loaded = loaded;
            this.replies = replies;
        }

        /**
         * Each call's reply, in order, waiting at most the connection's command timeout for each. On a failure other
         * than an unknown script it throws: calls sent after the failed one may have run (the callers' scripts are safe
         * to run again, or best-effort).
         *
         * @throws io.lettuce.core.RedisException the first call's failure other than an unknown script
         */
        public java.util.List<T> await() {
            java.time.Duration timeout = redis.getStatefulConnection().getTimeout();
            io.lettuce.core.LettuceFutures.awaitOrCancel(loaded, timeout.toNanos(), java.util.concurrent.TimeUnit.NANOSECONDS);
            java.util.List<T> results = new java.util.ArrayList<>(calls.size());
            java.util.List<Integer> unknown = new java.util.ArrayList<>();
            for (int i = 0; i < replies.size(); i++) {
                try {
                    results.add(io.lettuce.core.LettuceFutures.awaitOrCancel(replies.get(i), timeout.toNanos(),
                            java.util.concurrent.TimeUnit.NANOSECONDS));
                } catch (RedisNoScriptException notLoaded) {
                    results.add(null);
                    unknown.add(i);
                }
            }
            for (int i : unknown) {
                results.set(i, eval(redis, type, calls.get(i)));
            }
            return results;
        }
    }

    /**
     * One call of {@link #sendAll}: its keys, then its arguments as they are added, encoded in Redis's protocol at once
     * ({@link EncodedArgs}: for calls of thousands of arguments, where Lettuce's {@code evalsha} would write each into its
     * buffer piece by piece). Not thread-safe while built; add nothing once it is sent.
     */
    public static final class Call {
        final EncodedArgs arguments;

        /**
         * @param keys          the call's keys, all of them
         * @param expectedBytes about how many bytes its arguments take, for the first buffer (it grows as needed)
         */
        public Call(String[] keys, int expectedBytes) {
            int keyBytes = 0;
            for (String key : keys) {
                keyBytes += key.length() + 8;
            }
            arguments = new EncodedArgs(keyBytes + expectedBytes);
            arguments.value(keys.length);
            for (String key : keys) {
                arguments.key(key);
            }
        }

        /** A call with these keys and these arguments. */
        public Call(String[] keys, String... args) {
            this(keys, 16 * args.length);
            for (String arg : args) {
                arg(arg);
            }
        }

        public Call arg(String value) {
            arguments.value(value);
            return this;
        }

        public Call arg(long value) {
            arguments.value(value);
            return this;
        }

        /**
         * Name and value pairs: {@code names}' first {@code values.length} names, each followed by its value (a null
         * value sent empty).
         *
         * @throws IllegalArgumentException when there are more values than names
         */
        public Call pairs(Names names, String[] values) {
            if (values.length > names.size()) {
                throw new IllegalArgumentException(values.length + " values for " + names.size() + " names");
            }
            for (int i = 0; i < values.length; i++) {
                pair(names, i, values[i]);
            }
            return this;
        }

        /** Name {@code index} of {@code names}, then {@code value} (null sent empty). */
        public Call pair(Names names, int index, String value) {
            arguments.encoded(names.encoded[index]).value(value);
            return this;
        }
    }

    /**
     * Argument texts encoded once, for {@link Call#pairs}: the field names a call sends with each of its hundred jobs.
     * Immutable, thread-safe.
     */
    public static final class Names {
        private final byte[][] encoded;

        public Names(java.util.List<String> names) {
            encoded = names.stream().map(EncodedArgs::encodedOf).toArray(byte[][]::new);
        }

        /** How many names. */
        public int size() {
            return encoded.length;
        }
    }

    /**
     * Runs the script through a {@link RedisPipeline} and waits for its reply: {@code EVALSHA}, and {@code EVAL} (a
     * second round trip) when Redis does not know the script.
     */
    public <T> T call(RedisPipeline pipeline, ScriptOutputType type, String[] keys, String... args) {
        try {
            return pipeline.call(redis -> redis.<T>evalsha(sha, type, keys, args));
        } catch (RedisNoScriptException unknown) {
            return pipeline.call(redis -> redis.<T>eval(text, type, keys, args));
        }
    }

    @Override
    public String toString() {
        return name + "@" + sha.substring(0, 8);
    }
}
