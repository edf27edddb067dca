package dev.kage.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.kage.config.DatabaseUrl;
import dev.kage.testing.DatabaseFixture;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import java.net.URI;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * A Postgres that is up but stops answering (stopped, or its host gone without a reset) — made here by a proxy that
 * holds every byte — must not hold a statement forever: the pool's socket timeout turns it into a failure.
 */
class DatabaseTest {
    private final DatabaseFixture db = new DatabaseFixture();
    private final URI target = URI.create(TestServices.databaseUrl());
    private final TcpProxy proxy = TcpProxy.start(target.getHost(), target.getPort() > 0 ? target.getPort() : 5432);

    @AfterEach
    void cleanUp() {
        proxy.close();
        db.close();
    }

    @Test
    void aStatementWaitingForAServerThatStoppedAnsweringFailsAfterTheSocketTimeoutAndThePoolRecovers() throws Exception {
        try (Database proxied = open(4)) {
            CompletableFuture<Integer> statement = stalledMidStatement(proxied);

            ExecutionException failure = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                    () -> statement.get(30, TimeUnit.SECONDS));
            assertThat(causes(failure)).as("pgjdbc's read timed out").contains("timed out");

            proxy.resume();
            await().atMost(Duration.ofSeconds(20)).until(proxied::isReachable);
        }
    }

    @Test
    void withoutASocketTimeoutTheSameStatementWaitsForTheServer() throws Exception {
        try (Database proxied = open(0)) {
            CompletableFuture<Integer> statement = stalledMidStatement(proxied);

            org.junit.jupiter.api.Assertions.assertThrows(TimeoutException.class, () -> statement.get(6, TimeUnit.SECONDS),
                    "held past the other test's socket timeout");
            proxy.resume();
            assertThat(statement.get(30, TimeUnit.SECONDS)).isEqualTo(1);
        }
    }

    @Test
    void aSlowStatementIsCancelledByPostgresJustBeforeTheSocketTimeoutAndTheConnectionStaysUsable() {
        // Socket timeout 2 s: Postgres cancels at 1 s with its own error, so the query does not run on unattended.
        try (Database proxied = open(2)) {
            String marker = "slow-" + UUID.randomUUID();
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> proxied.jdbi().useHandle(h ->
                            h.createQuery("SELECT 1 FROM pg_sleep(5) -- " + marker).mapTo(Integer.class).one()))
                    .hasStackTraceContaining("statement timeout");
            int running = db.database().jdbi().withHandle(h -> h.createQuery(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE :q")
                    .bind("q", "%" + marker).mapTo(Integer.class).one());
            assertThat(running).as("nothing left running").isZero();
            assertThat(proxied.isReachable()).isTrue();
        }
        assertThat(Database.statementTimeoutMillis(60)).isEqualTo(59_000);
        assertThat(Database.statementTimeoutMillis(1)).isEqualTo(500);
    }

    @Test
    void aFailedStatementsMessageNamesPostgresErrorAndItsSqlButNeverItsBoundValues() {
        // Such messages are logged (a 503's ERROR line, an outbox's WARN); Jdbi appended the bound values, pgjdbc the
        // key's value of a unique violation.
        Database database = db.database();
        String secret = "https://bot:ghp_" + UUID.randomUUID().toString().replace("-", "") + "@github.com/acme/x.git";
        database.call(h -> h.execute("CREATE TABLE leak_check (repo text PRIMARY KEY)"));
        database.call(h -> h.createUpdate("INSERT INTO leak_check (repo) VALUES (:repo)").bind("repo", secret).execute());

        StoreException duplicate = org.junit.jupiter.api.Assertions.assertThrows(StoreException.class, () -> database.call(h ->
                h.createUpdate("INSERT INTO leak_check (repo) VALUES (:repo)").bind("repo", secret).execute()));
        assertThat(causes(duplicate)).doesNotContain("ghp_");
        assertThat(duplicate.getMessage()).contains("duplicate key value violates unique constraint")
                .contains("[statement: \"INSERT INTO leak_check (repo) VALUES (:repo)\"]");

        StoreException badType = org.junit.jupiter.api.Assertions.assertThrows(StoreException.class, () -> database.call(h ->
                h.createQuery("SELECT :repo || 'x', :count::int").bind("repo", secret).bind("count", "many")
                        .mapTo(String.class).one()));
        assertThat(badType.getMessage()).contains("invalid input syntax for type integer").doesNotContain("many");
        assertThat(causes(badType)).doesNotContain("ghp_");
        // Postgres quotes a value it cannot take in its own message: a bound one, a secret as well.
        StoreException quoted = org.junit.jupiter.api.Assertions.assertThrows(StoreException.class, () -> database.call(h ->
                h.createQuery("SELECT CAST(:id AS uuid)").bind("id", secret).mapTo(String.class).one()));
        assertThat(quoted.getMessage()).contains("invalid input syntax for type uuid (SQLState 22P02)");
        assertThat(causes(quoted)).doesNotContain("ghp_");
    }

    private Database open(int socketTimeoutSeconds) {
        return Database.open(DatabaseUrl.parse("proxied", TcpProxy.redirectDatabaseUrl(TestServices.databaseUrl(), proxy)),
                db.schema(), "stalled", 2, socketTimeoutSeconds);
    }

    /**
     * A statement that Postgres is working on (a 2.5 s sleep, within the 3 s statement timeout of a 4 s socket timeout)
     * when the proxy starts holding every byte.
     */
    private CompletableFuture<Integer> stalledMidStatement(Database proxied) {
        String marker = "stall-" + UUID.randomUUID();
        CompletableFuture<Integer> statement = CompletableFuture.supplyAsync(() -> proxied.jdbi().withHandle(h ->
                h.createQuery("SELECT 1 FROM pg_sleep(2.5) -- " + marker).mapTo(Integer.class).one()));
        await().atMost(Duration.ofSeconds(20)).until(() -> db.database().jdbi().withHandle(h -> h.createQuery(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE :q")
                .bind("q", "%" + marker).mapTo(Integer.class).one()) == 1);
        proxy.stall();
        return statement;
    }

    private static String causes(Throwable failure) {
        StringBuilder all = new StringBuilder();
        for (Throwable t = failure; t != null; t = t.getCause()) {
            all.append(t).append('\n');
        }
        return all.toString();
    }
}
