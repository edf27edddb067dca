package dev.kage.testing;

import dev.kage.config.DatabaseUrl;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.PostgreSQLContainer;

/**
 * Where tests find Redis and Postgres: {@code KAGE_TEST_REDIS_URL} / {@code KAGE_TEST_DATABASE_URL}
 * when set, else the local defaults when they answer, else Testcontainers when a Docker engine
 * exists, else a failure that says how to start them. Each test takes its own namespace and schema
 * from here, so tests never touch each other's data or a running fleet's. Thread-safe.
 */
public final class TestServices {
    private static final String LOCAL_REDIS = "redis://127.0.0.1:6379";
    private static final String LOCAL_DATABASE = "postgresql://postgres@127.0.0.1:5432/kage_test";
    private static final String HOW = "Start them with ops/services.sh up, or set KAGE_TEST_REDIS_URL / KAGE_TEST_DATABASE_URL.";

    private static String redisUrl;
    private static String databaseUrl;

    private TestServices() {
    }

    public static synchronized String redisUrl() {
        if (redisUrl == null) {
            redisUrl = resolveRedis();
        }
        return redisUrl;
    }

    /** A libpq URL of a database that exists. */
    public static synchronized String databaseUrl() {
        if (databaseUrl == null) {
            databaseUrl = resolveDatabase();
        }
        return databaseUrl;
    }

    /** A fresh Redis key namespace, e.g. {@code kt-3f2a9c1b}. */
    public static String newNamespace() {
        return "kt-" + UUID.randomUUID().toString().substring(0, 8);
    }

    /** A fresh Postgres schema name, e.g. {@code kt_3f2a9c1b}; Flyway creates it on first use. */
    public static String newSchema() {
        return "kt_" + UUID.randomUUID().toString().replace("-", "").substring(0, 12).toLowerCase(Locale.ROOT);
    }

    /** Drops a schema this test created. */
    public static void dropSchema(String schema) {
        if (!schema.startsWith("kt_")) {
            throw new IllegalArgumentException("refusing to drop " + schema + ": not a test schema");
        }
        execute(databaseUrl(), "DROP SCHEMA IF EXISTS \"" + schema + "\" CASCADE");
    }

    /** Creates a database for a test that needs one of its own (name must start with kt_) and returns its URL. */
    public static String createDatabase(String name) {
        if (!name.startsWith("kt_")) {
            throw new IllegalArgumentException("test databases start with kt_");
        }
        execute(withDatabase(databaseUrl(), "postgres"), "CREATE DATABASE \"" + name + "\"");
        return withDatabase(databaseUrl(), name);
    }

    public static void dropDatabase(String name) {
        if (!name.startsWith("kt_")) {
            throw new IllegalArgumentException("refusing to drop " + name + ": not a test database");
        }
        execute(withDatabase(databaseUrl(), "postgres"), "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
    }

    /** Settings for an application context or a child process under test, by environment-variable name. */
    public static Map<String, String> environment(String namespace, String schema) {
        Map<String, String> env = new HashMap<>();
        env.put("REDIS_URL", redisUrl());
        env.put("DATABASE_URL", databaseUrl());
        env.put("KAGE_NAMESPACE", namespace);
        env.put("KAGE_DB_SCHEMA", schema);
        return env;
    }

    /** The same settings as Micronaut properties ({@code MAX_TOKENS_PER_TASK} becomes {@code max.tokens.per.task}). */
    public static Map<String, Object> properties(Map<String, String> environment) {
        Map<String, Object> properties = new HashMap<>();
        environment.forEach((k, v) -> properties.put(k.toLowerCase(Locale.ROOT).replace('_', '.'), v));
        return properties;
    }

    private static String resolveRedis() {
        String configured = System.getenv("KAGE_TEST_REDIS_URL");
        if (configured != null && !configured.isBlank()) {
            return configured;
        }
        if (reachable("127.0.0.1", 6379)) {
            return LOCAL_REDIS;
        }
        if (dockerAvailable()) {
            GenericContainer<?> redis = new GenericContainer<>("redis:7-alpine").withExposedPorts(6379);
            redis.start();
            return "redis://" + redis.getHost() + ":" + redis.getMappedPort(6379);
        }
        throw new IllegalStateException("No Redis for tests: nothing answers at 127.0.0.1:6379 and no Docker engine. " + HOW);
    }

    private static String resolveDatabase() {
        String configured = System.getenv("KAGE_TEST_DATABASE_URL");
        if (configured != null && !configured.isBlank()) {
            return configured;
        }
        if (reachable("127.0.0.1", 5432)) {
            ensureDatabase(LOCAL_DATABASE);
            return LOCAL_DATABASE;
        }
        if (dockerAvailable()) {
            PostgreSQLContainer<?> postgres = new PostgreSQLContainer<>("postgres:16-alpine").withDatabaseName("kage_test");
            postgres.start();
            return "postgresql://" + postgres.getUsername() + ":" + postgres.getPassword() + "@" + postgres.getHost() + ":"
                    + postgres.getMappedPort(5432) + "/kage_test";
        }
        throw new IllegalStateException("No Postgres for tests: nothing answers at 127.0.0.1:5432 and no Docker engine. " + HOW);
    }

    private static void ensureDatabase(String url) {
        String name = URI.create(url).getPath().substring(1);
        try {
            execute(url, "SELECT 1");
        } catch (IllegalStateException missing) {
            try {
                execute(withDatabase(url, "postgres"), "CREATE DATABASE \"" + name + "\"");
            } catch (IllegalStateException raced) {
                // another test JVM created it first
                execute(url, "SELECT 1");
            }
        }
    }

    static String withDatabase(String url, String database) {
        URI uri = URI.create(url);
        return uri.getScheme() + "://" + (uri.getRawUserInfo() == null ? "" : uri.getRawUserInfo() + "@") + uri.getHost()
                + (uri.getPort() > 0 ? ":" + uri.getPort() : "") + "/" + database;
    }

    private static void execute(String url, String sql) {
        DatabaseUrl db = DatabaseUrl.parse("test database", url);
        try (Connection connection = DriverManager.getConnection(db.jdbcUrl(), db.user(), db.password());
             Statement statement = connection.createStatement()) {
            statement.execute(sql);
        } catch (SQLException e) {
            throw new IllegalStateException(sql + " on " + db.jdbcUrl() + ": " + e.getMessage(), e);
        }
    }

    private static boolean reachable(String host, int port) {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(host, port), 500);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private static boolean dockerAvailable() {
        try {
            return DockerClientFactory.instance().isDockerAvailable();
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }
}
