package dev.kage.coordinator.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.coordinator.api.TestCoordinator;
import dev.kage.testing.TestServices;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.assertj.core.api.Assertions;
import org.junit.jupiter.api.Test;

/** The {@code keys} command against a real Postgres, and start-up with and without keys. */
class KeysCommandTest {

    private record Run(int status, String out, String err) {
    }

    private static Run keys(String schema, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        Env env = Env.of(Map.of("DATABASE_URL", TestServices.databaseUrl(), "KAGE_DB_SCHEMA", schema));
        int status = new KeysCommand(env, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8)).run(args);
        return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void aProductionStartWithoutAnyKeyRefusesNamingTheVariable() {
        String schema = TestServices.newSchema();
        try {
            assertThatThrownBy(() -> new TestCoordinator(schema, null, Map.of()).close())
                    .hasRootCauseInstanceOf(ConfigException.class)
                    .rootCause().hasMessageStartingWith("KAGE_API_KEYS is not set")
                    .hasMessageContaining("KAGE_DEV_MODE=true").hasMessageContaining("keys create");
        } finally {
            TestServices.dropSchema(schema);
        }
    }

    @Test
    void theCliCreatesTheFirstKeyWhichThenWorksAgainstTheApiAndRevokesIt() throws Exception {
        String schema = TestServices.newSchema();
        Run created = keys(schema, "create", "--tenant", "acme", "--scopes", "submit,read,admin", "--name", "first admin");
        assertThat(created.status()).as(created.err()).isZero();
        String key = created.out().strip();
        assertThat(key).matches("kb_[0-9A-Za-z]{32}");
        assertThat(created.err()).contains("Created API key").contains("tenant acme").contains("submit, read, admin")
                .doesNotContain(key);

        Run list = keys(schema, "list");
        assertThat(list.status()).isZero();
        assertThat(list.out()).contains(key.substring(0, 11)).contains("first admin").doesNotContain(key.substring(11));

        try (TestCoordinator coordinator = new TestCoordinator(schema, null, Map.of("KAGE_API_KEY_CACHE_SECONDS", "0"))) {
            assertThat(coordinator.get("/api/v1/tasks", key).statusCode()).isEqualTo(200);
            HttpResponse<String> another = coordinator.send("POST", "/api/v1/keys", key,
                    "{\"tenant\": \"globex\", \"scopes\": [\"submit\", \"read\"]}");
            assertThat(another.statusCode()).as(another.body()).isEqualTo(201);

            long id = TestCoordinator.json(coordinator.get("/api/v1/keys?tenant=acme", key)).get("keys").get(0).get("id").asLong();
            Run revoked = keys(schema, "revoke", Long.toString(id));
            assertThat(revoked.status()).as(revoked.err()).isZero();
            assertThat(revoked.out()).contains("Revoked API key " + id);
            assertThat(coordinator.get("/api/v1/tasks", key).statusCode()).isEqualTo(401);
        }
    }

    @Test
    void badArgumentsAreUsageErrorsNamingTheOption() {
        String schema = TestServices.newSchema();
        try {
            Run bad = keys(schema, "create", "--tenant", "no spaces", "--scopes", "read,root");
            assertThat(bad.status()).isEqualTo(2);
            assertThat(bad.err()).contains("--tenant").contains("--scopes").contains("'root' is not a scope");
            Assertions.assertThat(keys(schema, "create", "--tenant", "acme").err()).contains("--scopes: required");
            assertThat(keys(schema, "frobnicate").status()).isEqualTo(2);
            assertThat(keys(schema, "revoke", "abc").status()).isEqualTo(2);
            assertThat(keys(schema, "create", "--tenant", "acme", "--scopes", "read", "--bogus", "1").err())
                    .contains("unknown option --bogus");
            Run unknown = keys(schema, "revoke", "424242");
            assertThat(unknown.status()).isEqualTo(1);
            assertThat(unknown.err()).contains("No API key 424242");
        } finally {
            TestServices.dropSchema(schema);
        }
    }
}
