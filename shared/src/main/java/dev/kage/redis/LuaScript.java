package dev.kage.redis;

import dev.kage.KageException;
import io.lettuce.core.RedisNoScriptException;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.api.sync.RedisCommands;
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

    private LuaScript(String name, String text) {
        this.name = name;
        this.text = text;
        try {
            this.sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-1").digest(text.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
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
