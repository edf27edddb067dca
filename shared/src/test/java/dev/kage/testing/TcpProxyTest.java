package dev.kage.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.kage.config.DatabaseUrl;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.StatefulRedisConnection;
import java.net.URI;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class TcpProxyTest {
    private static final Duration FAST = Duration.ofSeconds(5);

    @Test
    void postgresLooksDownWhileCutAndAnswersNewConnectionsAfterRestore() throws SQLException {
        URI target = URI.create(TestServices.databaseUrl());
        try (TcpProxy proxy = TcpProxy.start(target.getHost(), target.getPort() > 0 ? target.getPort() : 5432)) {
            DatabaseUrl url = DatabaseUrl.parse("proxied", TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy));
            try (Connection before = open(url)) {
                assertThat(selectOne(before)).isEqualTo(1);
                assertThat(proxy.openConnections()).isEqualTo(1);

                proxy.cut();

                assertThat(proxy.openConnections()).isZero();
                assertFailsFast(() -> selectOne(before));
                assertFailsFast(() -> open(url).close());
            }

            proxy.restore();

            try (Connection after = open(url)) {
                assertThat(selectOne(after)).isEqualTo(1);
            }
        }
    }

    @Test
    void lettuceFailsWithinItsTimeoutWhileCutAndReconnectsByItselfAfterRestore() {
        URI target = URI.create(TestServices.redisUrl());
        try (TcpProxy proxy = TcpProxy.start(target.getHost(), target.getPort() > 0 ? target.getPort() : 6379)) {
            RedisClient client = RedisClient.create(TcpProxy.redirectRedisUrl(TestServices.redisUrl(), proxy));
            client.setDefaultTimeout(Duration.ofSeconds(1));
            try (StatefulRedisConnection<String, String> connection = client.connect()) {
                assertThat(connection.sync().ping()).isEqualTo("PONG");

                proxy.cut();

                long start = System.nanoTime();
                assertThatThrownBy(() -> connection.sync().ping()).isInstanceOf(RedisException.class);
                assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(FAST);

                proxy.restore();

                // Lettuce's reconnect backoff decides when, so wait for it rather than guess
                await().atMost(Duration.ofSeconds(30)).ignoreExceptions()
                        .until(() -> "PONG".equals(connection.sync().ping()));
                assertThat(proxy.openConnections()).isEqualTo(1);
            } finally {
                client.shutdown();
            }
        }
    }

    @Test
    void aClosedTargetLooksLikeAResetNotAHang() throws Exception {
        int unused;
        try (var probe = new java.net.ServerSocket(0)) {
            unused = probe.getLocalPort();
        }
        try (TcpProxy proxy = TcpProxy.start("127.0.0.1", unused)) {
            DatabaseUrl url = DatabaseUrl.parse("proxied", "postgresql://postgres@127.0.0.1:" + proxy.port() + "/kage_test");
            assertFailsFast(() -> open(url).close());
            assertThat(proxy.openConnections()).isZero();
        }
    }

    @Test
    void urlsKeepUserPasswordDatabaseAndQuery() {
        try (TcpProxy proxy = TcpProxy.start("db.internal", 5432)) {
            int port = proxy.port();
            assertThat(TcpProxy.redirectDatabaseUrl("postgresql://kage:s%40cret@db.internal:5432/kage?sslmode=disable", proxy))
                    .isEqualTo("postgresql://kage:s%40cret@127.0.0.1:" + port + "/kage?sslmode=disable");
            assertThat(TcpProxy.redirectDatabaseUrl("postgresql://postgres@db.internal/kage_test", proxy))
                    .isEqualTo("postgresql://postgres@127.0.0.1:" + port + "/kage_test");
            assertThat(TcpProxy.redirectDatabaseUrl("jdbc:postgresql://db.internal:5432/kage?user=postgres", proxy))
                    .isEqualTo("jdbc:postgresql://127.0.0.1:" + port + "/kage?user=postgres");
            assertThat(TcpProxy.redirectRedisUrl("redis://:pw@cache:6380/3?timeout=5s", proxy))
                    .isEqualTo("redis://:pw@127.0.0.1:" + port + "/3?timeout=5s");
            assertThat(TcpProxy.redirectRedisUrl("redis://cache", proxy)).isEqualTo("redis://127.0.0.1:" + port);
            assertThatThrownBy(() -> TcpProxy.redirectRedisUrl("postgresql://db/kage", proxy))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("redis");
        }
    }

    private static Connection open(DatabaseUrl url) throws SQLException {
        return DriverManager.getConnection(url.jdbcUrl(), url.user(), url.password());
    }

    private static int selectOne(Connection connection) throws SQLException {
        try (Statement statement = connection.createStatement(); ResultSet rows = statement.executeQuery("SELECT 1")) {
            rows.next();
            return rows.getInt(1);
        }
    }

    private static void assertFailsFast(SqlAction action) {
        long start = System.nanoTime();
        assertThatThrownBy(action::run).isInstanceOf(SQLException.class);
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(FAST);
    }

    @FunctionalInterface
    private interface SqlAction {
        void run() throws SQLException;
    }
}
