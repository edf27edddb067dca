package dev.kage.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class PrivateRedisTest {

    @BeforeAll
    static void needsRedisServer() {
        assumeTrue(PrivateRedis.available(), "no redis-server binary");
    }

    @Test
    void aofKeepsKeysAcrossACleanStop() {
        try (PrivateRedis redis = PrivateRedis.start(true)) {
            withRedis(redis, commands -> commands.set("k", "v"));

            redis.stop();
            redis.restart();

            withRedis(redis, commands -> assertThat(commands.get("k")).isEqualTo("v"));
        }
    }

    @Test
    void aofAlwaysKeepsKeysAcrossAKill() {
        try (PrivateRedis redis = PrivateRedis.start(PrivateRedis.Persistence.AOF_ALWAYS)) {
            withRedis(redis, commands -> commands.set("k", "v"));

            redis.kill();
            redis.restart();

            withRedis(redis, commands -> assertThat(commands.get("k")).isEqualTo("v"));
        }
    }

    @Test
    void withoutAofARestartStartsEmpty() {
        try (PrivateRedis redis = PrivateRedis.start(false)) {
            withRedis(redis, commands -> commands.set("k", "v"));

            redis.restart();

            withRedis(redis, commands -> assertThat(commands.dbsize()).isZero());
        }
    }

    @Test
    void aKilledServerRestartsOnTheSamePort() {
        try (PrivateRedis redis = PrivateRedis.start(true)) {
            String url = redis.url();

            redis.kill();
            redis.restart();

            assertThat(redis.url()).isEqualTo(url);
            withRedis(redis, commands -> assertThat(commands.ping()).isEqualTo("PONG"));
        }
    }

    @Test
    void lettuceReconnectsByItselfAfterAKillAndRestart() {
        try (PrivateRedis redis = PrivateRedis.start(true)) {
            RedisClient client = RedisClient.create(redis.url());
            client.setDefaultTimeout(Duration.ofSeconds(1));
            try (StatefulRedisConnection<String, String> connection = client.connect()) {
                assertThat(connection.sync().ping()).isEqualTo("PONG");

                redis.kill();
                redis.restart();

                // Lettuce's reconnect backoff decides when, so wait for it rather than guess
                await().atMost(Duration.ofSeconds(30)).ignoreExceptions()
                        .until(() -> "PONG".equals(connection.sync().ping()));
            } finally {
                client.shutdown();
            }
        }
    }

    @Test
    void aFailedRestartSaysWhyAndCloseDeletesTheDir() throws Exception {
        PrivateRedis redis = PrivateRedis.start(false);
        Path dir = redis.dir();
        redis.kill();
        try (ServerSocket squatter = new ServerSocket(redis.port(), 1, InetAddress.getLoopbackAddress())) {
            assertThatThrownBy(redis::restart).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("Address already in use");
        } finally {
            redis.close();
        }
        assertThat(Files.exists(dir)).isFalse();
    }

    private static void withRedis(PrivateRedis redis, Consumer<RedisCommands<String, String>> action) {
        RedisClient client = RedisClient.create(redis.url());
        try (StatefulRedisConnection<String, String> connection = client.connect()) {
            action.accept(connection.sync());
        } finally {
            client.shutdown();
        }
    }
}
