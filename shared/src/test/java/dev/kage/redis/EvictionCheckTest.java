package dev.kage.redis;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.PrivateRedis;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** On a Redis of the test's own: the shared one's policy is not this test's to change. */
class EvictionCheckTest {
    @Test
    void aRedisThatMayEvictKeysIsNamedWithItsPolicyAndOneThatMayNotIsNot() {
        Assumptions.assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis server = PrivateRedis.start(PrivateRedis.Persistence.NONE)) {
            RedisClient client = RedisClient.create(server.url());
            try (StatefulRedisConnection<String, String> connection = client.connect()) {
                var redis = connection.sync();
                redis.configSet("maxmemory-policy", "noeviction");
                assertThat(EvictionCheck.warning(redis)).isEmpty();
                redis.configSet("maxmemory-policy", "allkeys-lru");
                assertThat(EvictionCheck.warning(redis)).hasValueSatisfying(warning -> assertThat(warning)
                        .contains("'allkeys-lru'").contains("maxmemory-policy noeviction"));
                redis.configSet("maxmemory-policy", "volatile-ttl");
                assertThat(EvictionCheck.warning(redis)).hasValueSatisfying(warning -> assertThat(warning).contains("'volatile-ttl'"));
            } finally {
                client.shutdown();
            }
        }
    }
}
