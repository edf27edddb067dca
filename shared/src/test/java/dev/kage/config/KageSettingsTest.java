package dev.kage.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Map;
import org.junit.jupiter.api.Test;

class KageSettingsTest {

    @Test
    void defaultsAreTheSeeds() {
        KageSettings settings = KageSettings.load(Env.of(Map.of()));
        assertThat(settings.budget().tenantDefaults().isNone()).isTrue();
        assertThat(settings.budget().holdGrace()).isEqualTo(java.time.Duration.ofMinutes(10));
        assertThat(KageSettings.load(Env.of(Map.of("TENANT_MAX_USD_PER_DAY", "25.50", "TENANT_MAX_TOKENS_PER_MONTH", "9000000")))
                .budget().tenantDefaults()).isEqualTo(new dev.kage.budget.PeriodLimits(0, 25_500_000, 9_000_000, 0));
        assertThat(settings.maxTokensPerTask()).isEqualTo(50_000);
        assertThat(settings.tokenWarningThreshold()).isEqualTo(0.8);
        assertThat(settings.maxRequestsPerMinute()).isEqualTo(50);
        assertThat(settings.backoffBaseSeconds()).isEqualTo(1.0);
        assertThat(settings.backoffMaxSeconds()).isEqualTo(60.0);
        assertThat(settings.rateLimitMaxRetries()).isEqualTo(5);
        assertThat(settings.defaultCliTimeout()).isEqualTo(300);
        assertThat(settings.maxParallelClis()).isEqualTo(5);
        assertThat(settings.worktreeCleanupDays()).isEqualTo(7);
        assertThat(settings.maxActiveWorktrees()).isEqualTo(50);
        assertThat(settings.namespace()).isEqualTo("kage");
        assertThat(settings.dbSchema()).isEqualTo("development_docs");
        assertThat(settings.dbSocketTimeoutSeconds()).isEqualTo(60);
        assertThat(settings.redisUrl()).isEqualTo("redis://127.0.0.1:6379");
        assertThat(settings.database().jdbcUrl()).isEqualTo("jdbc:postgresql://127.0.0.1:5432/kage");
        assertThat(settings.database().user()).isEqualTo("postgres");
        assertThat(settings.budgetMode()).isEqualTo(BudgetMode.LOG);
        assertThat(settings.queue().deadLetterMax()).isEqualTo(10_000);
        assertThat(settings.queue().deadLetterMaxAge()).isEqualTo(java.time.Duration.ofDays(180));
    }

    @Test
    void seedVariablesOverrideDefaults() {
        KageSettings settings = KageSettings.load(Env.of(Map.of("MAX_TOKENS_PER_TASK", "100000",
                "MAX_REQUESTS_PER_MINUTE", "100", "BASE_BRANCH", "master", "BUDGET_MODE", "enforce")));
        assertThat(settings.maxTokensPerTask()).isEqualTo(100_000);
        assertThat(settings.maxRequestsPerMinute()).isEqualTo(100);
        assertThat(settings.baseBranch()).isEqualTo("master");
        assertThat(settings.budgetMode()).isEqualTo(BudgetMode.ENFORCE);
    }

    @Test
    void badValuesNameTheVariableTheValueAndTheRule() {
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("MAX_REQUESTS_PER_MINUTE", "abc"))))
                .isInstanceOf(ConfigException.class)
                .hasMessage("MAX_REQUESTS_PER_MINUTE=abc: must be a positive integer (default 50)");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("MAX_TOKENS_PER_TASK", "-5"))))
                .hasMessage("MAX_TOKENS_PER_TASK=-5: must be a whole number from 1 to 1000000000000000 (default 50000)");
        // Past 10^15 the ledger's Lua (doubles) no longer counts exactly; past 2^63 it stored the limit as negative: none.
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("MAX_TOKENS_PER_TASK", "9223372036854775807"))))
                .hasMessageStartingWith("MAX_TOKENS_PER_TASK=9223372036854775807: must be a whole number from 1 to");
        assertThat(KageSettings.load(Env.of(Map.of("MAX_TOKENS_PER_TASK", "1000000000000000"))).maxTokensPerTask())
                .isEqualTo(1_000_000_000_000_000L);
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("TENANT_MAX_TOKENS_PER_MONTH", "1000000000000001"))))
                .hasMessage("TENANT_MAX_TOKENS_PER_MONTH=1000000000000001: must be a whole number of tokens up to "
                        + "1000000000000000 (10^15), 0 for no limit");
        assertThat(KageSettings.load(Env.of(Map.of("TENANT_MAX_TOKENS_PER_MONTH", "1000000000000000"))).budget()
                .tenantDefaults().monthTokens()).isEqualTo(1_000_000_000_000_000L);
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("BUDGET_HOLD_GRACE_SECONDS", "2592001"))))
                .hasMessageStartingWith("BUDGET_HOLD_GRACE_SECONDS=2592001: must be a whole number from 1 to 2592000");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_RECLAIM_IDLE_SECONDS", "604801"))))
                .hasMessageStartingWith("KAGE_RECLAIM_IDLE_SECONDS=604801: must be at most 604800");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("TOKEN_WARNING_THRESHOLD", "1.5"))))
                .hasMessageStartingWith("TOKEN_WARNING_THRESHOLD=1.5: must be a fraction");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("TENANT_MAX_TOKENS_PER_DAY", "-1"))))
                .isInstanceOf(ConfigException.class).hasMessageContaining("TENANT_MAX_TOKENS_PER_DAY=-1");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("TENANT_MAX_USD_PER_MONTH", "ten dollars"))))
                .isInstanceOf(ConfigException.class).hasMessageContaining("TENANT_MAX_USD_PER_MONTH=ten dollars");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_DB_SOCKET_TIMEOUT_SECONDS", "-1"))))
                .isInstanceOf(ConfigException.class)
                .hasMessage("KAGE_DB_SOCKET_TIMEOUT_SECONDS=-1: must be an integer from 0 to 3600 (default 60)");
        assertThat(KageSettings.load(Env.of(Map.of("KAGE_DB_SOCKET_TIMEOUT_SECONDS", "0"))).dbSocketTimeoutSeconds()).isZero();
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("BUDGET_MODE", "strict"))))
                .hasMessageStartingWith("BUDGET_MODE=strict: must be one of log|enforce");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("DATABASE_URL", "mysql://x/y"))))
                .hasMessageStartingWith("DATABASE_URL: scheme must be postgresql://");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("BASE_BRANCH", "--upload-pack=x"))))
                .hasMessageStartingWith("BASE_BRANCH=--upload-pack=x: not a valid git branch name");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("RATE_LIMIT_BACKOFF_BASE", "10", "RATE_LIMIT_BACKOFF_MAX", "5"))))
                .hasMessageContaining("RATE_LIMIT_BACKOFF_MAX=5.0: must not be below RATE_LIMIT_BACKOFF_BASE=10.0");
        for (String url : new String[] {"redis-sentinel://127.0.0.1:26379/0#mymaster", "redis-socket:///tmp/redis.sock", "http://x"}) {
            assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("REDIS_URL", url)))).as(url)
                    .isInstanceOf(ConfigException.class).hasMessageStartingWith("REDIS_URL: ");
        }
        assertThat(KageSettings.load(Env.of(Map.of("REDIS_URL", "rediss://:pw@redis.example:6380/2"))).redisUrl())
                .isEqualTo("rediss://:pw@redis.example:6380/2");
        assertThat(KageSettings.load(Env.of(Map.of("REDIS_URL", "rediss://:pw-1@redis.example:6380/2"))).toString())
                .contains("rediss://***@redis.example:6380/2").doesNotContain("pw-1");
        // The parser's own message quotes the whole URL: start-up logged the password of one it could not parse.
        for (String url : new String[] {"redis://:Xy%9q^Z@redis:6379", "redis://kage:Xy^|Z@redis:6379", "redis://:Xy Z@redis:6379"}) {
            assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("REDIS_URL", url)))).as(url)
                    .isInstanceOf(ConfigException.class).hasMessageStartingWith("REDIS_URL: ").message()
                    .doesNotContain("Xy").doesNotContain("9q").doesNotContain("Z@");
        }
        // A base that rounded to 0 ms paused nothing after a 429; one past a day overflowed.
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("RATE_LIMIT_BACKOFF_BASE", "0.0004"))))
                .hasMessage("RATE_LIMIT_BACKOFF_BASE=0.0004: must be a number of seconds from 0.001 to 86400");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("RATE_LIMIT_BACKOFF_MAX", "1e12"))))
                .hasMessageStartingWith("RATE_LIMIT_BACKOFF_MAX=1e12: must be a number of seconds");
        // The seed's RATE_LIMIT_MAX_RETRIES=0: the first 429 fails the job.
        assertThat(KageSettings.load(Env.of(Map.of("RATE_LIMIT_MAX_RETRIES", "0"))).rateLimit().maxRetries()).isZero();
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("RATE_LIMIT_MAX_RETRIES", "-1"))))
                .hasMessageStartingWith("RATE_LIMIT_MAX_RETRIES=-1: must be an integer from 0 to 1000000");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_NAMESPACE", "a b"))))
                .hasMessageStartingWith("KAGE_NAMESPACE=a b:");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("DEFAULT_CLI_TIMEOUT", "100000"))))
                .hasMessageStartingWith("DEFAULT_CLI_TIMEOUT=100000: must be at most 86400");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_DEAD_LETTER_MAX", "0"))))
                .hasMessageStartingWith("KAGE_DEAD_LETTER_MAX=0: must be a positive integer");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_STREAM_KEEP_ACKED", "100001"))))
                .hasMessageStartingWith("KAGE_STREAM_KEEP_ACKED=100001: must be at most 100000");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_DEAD_LETTER_MAX", "200000"))))
                .hasMessageStartingWith("KAGE_DEAD_LETTER_MAX=200000: must be at most 100000");
        assertThatThrownBy(() -> KageSettings.load(Env.of(Map.of("KAGE_DEAD_LETTER_DAYS", "forever"))))
                .hasMessageStartingWith("KAGE_DEAD_LETTER_DAYS=forever: must be a positive integer");
        assertThat(KageSettings.load(Env.of(Map.of("KAGE_DEAD_LETTER_MAX", "50", "KAGE_DEAD_LETTER_DAYS", "7"))).queue())
                .extracting(QueueSettings::deadLetterMax, QueueSettings::deadLetterMaxAge)
                .containsExactly(50, java.time.Duration.ofDays(7));
    }

    @Test
    void databaseUrlAcceptsLibpqAndJdbcFormsAndHidesThePassword() {
        DatabaseUrl libpq = DatabaseUrl.parse("DATABASE_URL", "postgresql://kage:s%40cret@db.example:6543/fleet?sslmode=require");
        assertThat(libpq.jdbcUrl()).isEqualTo("jdbc:postgresql://db.example:6543/fleet?sslmode=require");
        assertThat(libpq.user()).isEqualTo("kage");
        assertThat(libpq.password()).isEqualTo("s@cret");
        assertThat(libpq.toString()).doesNotContain("s@cret").contains("***");

        DatabaseUrl jdbc = DatabaseUrl.parse("DATABASE_URL", "jdbc:postgresql://localhost/kage?user=postgres");
        assertThat(jdbc.jdbcUrl()).isEqualTo("jdbc:postgresql://localhost/kage?user=postgres");
        assertThatThrownBy(() -> DatabaseUrl.parse("DATABASE_URL", "postgresql://host:5432/"))
                .hasMessageContaining("no database name");
    }

    @Test
    void branchNamesThatCouldBeOptionsOrTraversalAreRefused() {
        assertThat(GitRefs.isValidBranchName("main")).isTrue();
        assertThat(GitRefs.isValidBranchName("release/1.2")).isTrue();
        assertThat(GitRefs.isValidBranchName("feature/x_y-z")).isTrue();
        for (String bad : new String[] {"-b", "--output=/tmp/x", "a..b", "../../etc", "a/.hidden", "x.lock", "a b",
                "a;rm -rf /", "$(id)", "", "a//b", "/abs", "trail/", "@", "naïve"}) {
            assertThat(GitRefs.isValidBranchName(bad)).as(bad).isFalse();
        }
    }
}
