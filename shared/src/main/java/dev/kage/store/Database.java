package dev.kage.store;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import dev.kage.config.DatabaseUrl;
import java.time.Duration;
import org.flywaydb.core.Flyway;
import org.jdbi.v3.core.Jdbi;
import org.jdbi.v3.postgres.PostgresPlugin;
import org.jdbi.v3.sqlobject.SqlObjectPlugin;

/**
 * The connection pool, the schema's migrations and the {@link Jdbi} on top. Every connection's
 * {@code search_path} is the configured schema, so SQL names tables without a schema. Thread-safe;
 * close it once at shutdown.
 */
public final class Database implements AutoCloseable {
    private final HikariDataSource dataSource;
    private final Jdbi jdbi;
    private final String schema;

    private Database(HikariDataSource dataSource, String schema) {
        this.dataSource = dataSource;
        this.schema = schema;
        this.jdbi = Jdbi.create(dataSource).installPlugin(new SqlObjectPlugin()).installPlugin(new PostgresPlugin())
                // Costs bound as arrays (the batched outcome insert); the plugins know the other element types.
                .registerArrayType(java.math.BigDecimal.class, "numeric");
        jdbi.getConfig(org.jdbi.v3.core.statement.StatementExceptions.class).setMessageRendering(Database::errorMessage);
    }

    /**
     * A failed statement's message: the driver's error and the statement's SQL, never its bound values. Jdbi's default
     * appended the values ({@code arguments:{...}}), and the message is logged (a 503's ERROR line, an outbox's WARN): a
     * repository URL's credentials, a task's description or an API key's hash would reach the logs with it.
     */
    static String errorMessage(org.jdbi.v3.core.statement.StatementException e) {
        var context = e.getStatementContext();
        String sql = context == null || context.getRawSql() == null ? "" : context.getRawSql().strip().replaceAll("\\s+", " ");
        if (sql.length() > SQL_SHOWN) {
            sql = sql.substring(0, SQL_SHOWN) + "...";
        }
        return driverMessage(e) + (sql.isEmpty() ? "" : " [statement: \"" + sql + "\"]");
    }

    /**
     * The driver's error of a data exception (SQLState class 22), which quotes the value Postgres refused
     * ({@code invalid input syntax for type uuid: "..."}): a bound one. Null for any other failure.
     */
    private static org.postgresql.util.PSQLException quotingAValue(Throwable e) {
        return e.getCause() instanceof org.postgresql.util.PSQLException sql && sql.getSQLState() != null
                && sql.getSQLState().startsWith("22") && sql.getServerErrorMessage() != null ? sql : null;
    }

    /** The driver's error, a data exception's without the value it quotes. */
    private static String driverMessage(org.jdbi.v3.core.statement.StatementException e) {
        org.postgresql.util.PSQLException sql = quotingAValue(e);
        return sql == null ? e.getShortMessage() : sql.getClass().getName() + ": " + withoutValue(sql);
    }

    private static String withoutValue(org.postgresql.util.PSQLException sql) {
        String primary = String.valueOf(sql.getServerErrorMessage().getMessage());
        return "ERROR: " + primary.replaceAll("(?s):\\s*\".*$", "") + " (SQLState " + sql.getSQLState() + ")";
    }

    /** Characters of a failed statement's SQL its message shows. */
    private static final int SQL_SHOWN = 200;

    /**
     * {@link #open(DatabaseUrl, String, String, int, int)} with the default socket timeout
     * ({@value dev.kage.config.KageSettings#DEFAULT_DB_SOCKET_TIMEOUT_SECONDS} s).
     */
    public static Database open(DatabaseUrl url, String schema, String poolName, int maxPoolSize) {
        return open(url, schema, poolName, maxPoolSize, dev.kage.config.KageSettings.DEFAULT_DB_SOCKET_TIMEOUT_SECONDS);
    }

    /**
     * Opens a pool and applies the migrations (Flyway takes a Postgres advisory lock, so a coordinator
     * and workers starting together migrate once).
     *
     * @param poolName             shown in Hikari's logs and metrics
     * @param maxPoolSize          connections at most
     * @param socketTimeoutSeconds how long a pooled connection waits for any answer from Postgres before it fails and
     *                             is dropped (pgjdbc's {@code socketTimeout}; 0: forever). A server that is up but does
     *                             not answer (stopped, its host gone without a reset) then counts as down instead of
     *                             holding the caller; Postgres cancels any statement a second sooner
     *                             ({@code statement_timeout}), so a slow one fails cleanly. A {@code socketTimeout} in
     *                             the URL wins over this one. Migrations run on a connection of their own without
     *                             either: building an index may take long
     */
    public static Database open(DatabaseUrl url, String schema, String poolName, int maxPoolSize, int socketTimeoutSeconds) {
        HikariConfig config = new HikariConfig();
        config.setPoolName(poolName);
        config.setJdbcUrl(url.jdbcUrl());
        if (url.user() != null) {
            config.setUsername(url.user());
        }
        if (url.password() != null) {
            config.setPassword(url.password());
        }
        config.setMaximumPoolSize(maxPoolSize);
        config.setMinimumIdle(1);
        // Short, so a Postgres outage turns into a quick error (an outbox write, a 503) rather than a hang.
        config.setConnectionTimeout(Duration.ofSeconds(3).toMillis());
        config.setInitializationFailTimeout(-1);
        String init = "SET search_path TO \"" + schema + "\"";
        if (socketTimeoutSeconds > 0) {
            // Driver properties are defaults: a socketTimeout named in the URL overrides this one.
            config.addDataSourceProperty("socketTimeout", Integer.toString(socketTimeoutSeconds));
            // Postgres itself cancels a statement a second before the client would give up on it, so a query that is
            // merely slow ends with a clear error and does not go on running after its connection was dropped. A SET,
            // not the startup parameter "options", which connection poolers such as PgBouncer refuse by default.
            init += "; SET statement_timeout = " + statementTimeoutMillis(socketTimeoutSeconds);
        }
        config.setConnectionInitSql(init);
        // pgjdbc puts Postgres's DETAIL into its messages (a unique key's value: "Key (idempotency_key)=(...) already
        // exists"); the messages are logged.
        config.addDataSourceProperty("logServerErrorDetail", "false");
        HikariDataSource dataSource = new HikariDataSource(config);
        try {
            org.postgresql.ds.PGSimpleDataSource migrations = new org.postgresql.ds.PGSimpleDataSource();
            migrations.setURL(url.jdbcUrl());
            // A server that accepts connections but never answers fails the start instead of holding it.
            migrations.setConnectTimeout(10);
            migrations.setLoginTimeout(30);
            migrations.setLogServerErrorDetail(false);
            if (url.user() != null) {
                migrations.setUser(url.user());
            }
            if (url.password() != null) {
                migrations.setPassword(url.password());
            }
            Flyway.configure()
                    .dataSource(migrations)
                    .schemas(schema)
                    .defaultSchema(schema)
                    .createSchemas(true)
                    .locations("classpath:db/migration")
                    .load()
                    .migrate();
        } catch (RuntimeException e) {
            dataSource.close();
            // Flyway's message quotes the JDBC URL, which may hold the password: the message is masked, and such an
            // exception is not kept as the cause (a stack trace prints it), its own cause is.
            String message = dev.kage.config.DatabaseUrl.masked(e.getMessage());
            Throwable cause = java.util.Objects.equals(message, e.getMessage()) ? e : e.getCause();
            throw new StoreException("cannot migrate schema " + schema + " at " + url.shown() + ": " + message, cause);
        }
        return new Database(dataSource, schema);
    }

    /** The server-side {@code statement_timeout} for a socket timeout: a second less, at least half a second. */
    static long statementTimeoutMillis(int socketTimeoutSeconds) {
        return Math.max(500, socketTimeoutSeconds * 1_000L - 1_000);
    }

    public Jdbi jdbi() {
        return jdbi;
    }

    /**
     * Runs {@code work} on a pooled handle; a Jdbi failure (Postgres away, a statement refused) becomes a
     * {@link StoreException}, which callers answer with a 503 or an outbox. The stores' one way to Postgres.
     */
    public <T> T call(org.jdbi.v3.core.HandleCallback<T, RuntimeException> work) {
        try {
            return jdbi.withHandle(work);
        } catch (org.jdbi.v3.core.JdbiException e) {
            // A data exception's driver error is not kept as the cause (a stack trace would print the value it quotes):
            // one with its SQLState and its message without the value stands in (callers tell content errors by state).
            org.postgresql.util.PSQLException quoting = quotingAValue(e);
            throw new StoreException("Postgres: " + e.getMessage(), quoting == null ? e
                    : new java.sql.SQLDataException(withoutValue(quoting), quoting.getSQLState()));
        }
    }

    public String schema() {
        return schema;
    }

    /** True when a connection answers {@code SELECT 1} now. */
    public boolean isReachable() {
        try {
            return jdbi.withHandle(h -> h.createQuery("SELECT 1").mapTo(Integer.class).one()) == 1;
        } catch (RuntimeException e) {
            return false;
        }
    }

    @Override
    public void close() {
        dataSource.close();
    }
}
