package dev.kage.redis;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.RedisFixture;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisConnectionException;
import io.lettuce.core.RedisException;
import org.junit.jupiter.api.Test;

/** {@link RedisErrors}: what is worth asking again, from real replies where Redis gives them. */
class RedisErrorsTest {
    @Test
    void anErrorAboutTheCommandIsNotTransientButRedisNotBeingReadyIs() {
        try (RedisFixture redis = new RedisFixture()) {
            String key = redis.keys().events() + ":not-a-stream";
            redis.redis().set(key, "x");
            RedisException wrongType = null;
            try {
                redis.redis().xlen(key);
            } catch (RedisException e) {
                wrongType = e;
            }
            assertThat(wrongType).isInstanceOf(RedisCommandExecutionException.class);
            assertThat(RedisErrors.isTransient(wrongType)).as(wrongType.getMessage()).isFalse();
            redis.redis().del(key);
        }
        for (String reply : new String[] {"LOADING Redis is loading the dataset in memory",
                "READONLY You can't write against a read only replica.", "OOM command not allowed when used memory > 'maxmemory'.",
                "BUSY Redis is busy running a script.", "MASTERDOWN Link with MASTER is down",
                "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."}) {
            assertThat(RedisErrors.isTransient(new RedisCommandExecutionException(reply))).as(reply).isTrue();
        }
        assertThat(RedisErrors.isTransient(new RedisCommandExecutionException("ERR Error running script: boom"))).isFalse();
        assertThat(RedisErrors.isTransient(new RedisConnectionException("Connection refused"))).isTrue();
    }
}
