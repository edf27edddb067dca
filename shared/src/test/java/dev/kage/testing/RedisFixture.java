package dev.kage.testing;

import dev.kage.redis.KageKeys;
import io.lettuce.core.KeyScanCursor;
import io.lettuce.core.RedisClient;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanCursor;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.util.List;

/**
 * A Lettuce client on the test Redis with a fresh namespace; {@link #close()} deletes every key of
 * that namespace (and only those: never FLUSHALL).
 */
public final class RedisFixture implements AutoCloseable {
    private final RedisClient client;
    private final StatefulRedisConnection<String, String> connection;
    private final String namespace = TestServices.newNamespace();
    private dev.kage.redis.RedisPipeline pipeline;

    public RedisFixture() {
        client = RedisClient.create(TestServices.redisUrl());
        connection = client.connect(dev.kage.redis.Utf8Codec.INSTANCE);
    }

    public String namespace() {
        return namespace;
    }

    public KageKeys keys() {
        return new KageKeys(namespace);
    }

    public RedisCommands<String, String> redis() {
        return connection.sync();
    }

    /** A {@link dev.kage.redis.RedisPipeline} on this fixture's Redis, opened on first use and closed with the fixture. */
    public synchronized dev.kage.redis.RedisPipeline pipeline() {
        if (pipeline == null) {
            pipeline = new dev.kage.redis.RedisPipeline(client, namespace, java.time.Duration.ofSeconds(10));
        }
        return pipeline;
    }

    public RedisClient client() {
        return client;
    }

    @Override
    public void close() {
        synchronized (this) {
            if (pipeline != null) {
                pipeline.close();
            }
        }
        RedisCommands<String, String> redis = connection.sync();
        for (String pattern : List.of(namespace + ":*", "{" + namespace + ":*")) {
            ScanCursor cursor = ScanCursor.INITIAL;
            do {
                KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(pattern).limit(500));
                if (!page.getKeys().isEmpty()) {
                    redis.del(page.getKeys().toArray(String[]::new));
                }
                cursor = page;
            } while (!cursor.isFinished());
        }
        connection.close();
        client.shutdown();
    }
}
