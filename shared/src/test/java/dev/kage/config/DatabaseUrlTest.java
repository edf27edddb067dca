package dev.kage.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.store.Database;
import dev.kage.store.StoreException;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

class DatabaseUrlTest {

    @Test
    void libpqUrlsAreReadAsLibpqReadsThem() {
        DatabaseUrl url = DatabaseUrl.parse("DATABASE_URL", "postgresql://kage:a+b%40c@db.example:6543/kage?sslmode=require");
        assertThat(url.jdbcUrl()).isEqualTo("jdbc:postgresql://db.example:6543/kage?sslmode=require");
        assertThat(url.user()).isEqualTo("kage");
        assertThat(url.password()).as("a '+' is a '+' (a space only in form data)").isEqualTo("a+b@c");
        // A compose service name with '_': java.net.URI sees no host in it.
        assertThat(DatabaseUrl.parse("DATABASE_URL", "postgres://kage@kage_db/kage").jdbcUrl())
                .isEqualTo("jdbc:postgresql://kage_db:5432/kage");
        assertThat(DatabaseUrl.parse("DATABASE_URL", "postgresql://[::1]:5433/kage").jdbcUrl())
                .isEqualTo("jdbc:postgresql://[::1]:5433/kage");
        assertThat(DatabaseUrl.parse("DATABASE_URL", "postgresql://u:p:q@h/d").password()).isEqualTo("p:q");
    }

    @Test
    void badUrlsStopStartUpNamingTheVariable() {
        for (String bad : new String[] {"postgresql://kage:50%zz@db/kage", "postgresql:///kage", "postgresql://db:99999/kage",
                "postgresql://db:port/kage", "postgresql://db/", "mysql://db/kage", "postgresql://[::1/kage"}) {
            assertThatThrownBy(() -> DatabaseUrl.parse("DATABASE_URL", bad)).as(bad).isInstanceOf(ConfigException.class)
                    .hasMessageStartingWith("DATABASE_URL: ").message().doesNotContain("zz");
        }
    }

    @Test
    void aPasswordWithAnUnescapedSlashQuestionMarkOrHashStopsStartUpWithoutShowingAnyOfIt() {
        // The authority ends at the first '/', '?' or '#': "Ab3" was read as the port, and the error quoted it.
        for (String bad : new String[] {"postgresql://kage:Ab3/x9@db/kage", "postgresql://kage:Ab3?x9@db/kage",
                "postgresql://kage:Ab3#x9@db/kage", "postgresql://kage:123/x9@db/kage", "postgresql://kage:99999/x9@db/kage",
                "postgresql://db/kage?Ab3x9@db"}) {
            assertThatThrownBy(() -> DatabaseUrl.parse("DATABASE_URL", bad)).as(bad).isInstanceOf(ConfigException.class)
                    .hasMessageStartingWith("DATABASE_URL: ").hasMessageContaining("must be percent-encoded")
                    .message().doesNotContain("Ab3").doesNotContain("x9").doesNotContain("123").doesNotContain("99999");
        }
        // An '@' in a parameter's value is no password's (an Azure-style user name).
        assertThat(DatabaseUrl.parse("DATABASE_URL", "postgresql://db/kage?user=kage@srv&sslmode=require").jdbcUrl())
                .isEqualTo("jdbc:postgresql://db:5432/kage?user=kage@srv&sslmode=require");
        assertThat(DatabaseUrl.parse("DATABASE_URL", "postgresql://kage:Ab3%2Fx9@db/kage").password()).isEqualTo("Ab3/x9");
        assertThat(new DatabaseUrl("jdbc:postgresql://h/d?password=pw1", "u", "pw2").toString()).doesNotContain("pw1", "pw2");
    }

    @Test
    void aPasswordInTheQueryIsNeverShownNorInTheErrorOfAMigrationThatCannotConnect() {
        assertThat(DatabaseUrl.masked("(jdbc:postgresql://h/d?password=ab)cd&ssl=true)")).doesNotContain("cd&")
                .contains("password=***&ssl=true");
        DatabaseUrl libpq = DatabaseUrl.parse("DATABASE_URL", "postgresql://kage@127.0.0.1:1/kage?password=s3cret&sslmode=disable");
        DatabaseUrl jdbc = DatabaseUrl.parse("DATABASE_URL", "jdbc:postgresql://127.0.0.1:1/kage?user=kage&password=s3cret");
        for (DatabaseUrl url : new DatabaseUrl[] {libpq, jdbc}) {
            assertThat(url.toString()).doesNotContain("s3cret").contains("password=***");
            assertThat(url.shown()).doesNotContain("s3cret");
            StringWriter trace = new StringWriter();
            assertThatThrownBy(() -> Database.open(url, "kage_url_test", "url-test", 1))
                    .isInstanceOf(StoreException.class)
                    .satisfies(e -> e.printStackTrace(new PrintWriter(trace)));
            assertThat(trace.toString()).as("message and causes").contains("cannot migrate schema").doesNotContain("s3cret");
        }
    }
}
