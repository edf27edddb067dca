package dev.kage.coordinator.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.testing.DatabaseFixture;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Database keys against a real Postgres: what is stored, lookup, the cache and its bound on revocation. */
class KeyAuthenticatorTest {
    private static final Duration TTL = Duration.ofSeconds(5);
    private static DatabaseFixture db;
    private static ApiKeyStore store;

    @BeforeAll
    static void open() {
        db = new DatabaseFixture();
        store = new ApiKeyStore(db.database());
    }

    @AfterAll
    static void close() {
        db.close();
    }

    private static KeyAuthenticator authenticator(Clock clock) {
        return new KeyAuthenticator(ApiKeys.load(Env.of(Map.of("KAGE_API_KEYS", "envtenant:env-key-12345"))), store, clock, TTL);
    }

    @Test
    void onlyTheKeysDigestAndPrefixAreStored() {
        ApiKeyStore.Created created = store.create("acme", "ci", Set.of(Scope.SUBMIT, Scope.READ));
        String key = created.key();
        assertThat(key).matches("kb_[0-9A-Za-z]{32}");
        assertThat(created.toString()).doesNotContain(key);

        Map<String, Object> row = db.database().jdbi().withHandle(h -> h.createQuery("SELECT * FROM api_keys WHERE id = :id")
                .bind("id", created.row().id()).mapToMap().one());
        assertThat((byte[]) row.get("sha256")).isEqualTo(ApiKeys.sha256(key));
        assertThat(row.get("prefix")).isEqualTo(key.substring(0, 11));
        assertThat(row.get("tenant")).isEqualTo("acme");
        for (Map.Entry<String, Object> column : row.entrySet()) {
            String shown = column.getValue() instanceof byte[] bytes ? new String(bytes, java.nio.charset.StandardCharsets.ISO_8859_1)
                    : String.valueOf(column.getValue());
            assertThat(shown).as(column.getKey()).doesNotContain(key.substring(11));
        }
        assertThat(store.findActive(ApiKeys.sha256(key))).map(ApiKeyStore.KeyRow::tenant).contains("acme");
    }

    @Test
    void aKeyDifferingInOneCharacterOrOnlySharingThePrefixIsRefused() {
        String key = store.create("acme", "", Set.of(Scope.READ)).key();
        KeyAuthenticator keys = authenticator(Clock.systemUTC());
        char last = key.charAt(key.length() - 1);
        String oneOff = key.substring(0, key.length() - 1) + (last == 'a' ? 'b' : 'a');
        for (String wrong : List.of(oneOff, key.substring(0, 11), key + "x", key.toUpperCase())) {
            assertThat(keys.fromMemory(ApiKeys.sha256(wrong))).as(wrong).isEmpty();
            assertThat(keys.fromStore(ApiKeys.sha256(wrong))).as(wrong).isEmpty();
        }
        assertThat(keys.fromStore(ApiKeys.sha256(key))).map(Principal::tenant).contains("acme");
    }

    @Test
    void environmentKeysAreKnownWithoutTheDatabaseWithTheirScopes() {
        Principal principal = authenticator(Clock.systemUTC()).fromMemory(ApiKeys.sha256("env-key-12345")).orElseThrow();
        assertThat(principal.tenant()).isEqualTo("envtenant");
        assertThat(principal.scopes()).containsExactlyInAnyOrder(Scope.SUBMIT, Scope.READ);
        assertThat(principal.keyId()).isNull();
        Principal admin = ApiKeys.load(Env.of(Map.of("KAGE_API_KEYS", "ops:ops-key-12345", "KAGE_ADMIN_TENANTS", "ops")))
                .principalOf(ApiKeys.sha256("ops-key-12345")).orElseThrow();
        assertThat(admin.scopes()).isEqualTo(Scope.ALL);
    }

    @Test
    void aRevokedKeyIsAcceptedFromTheCacheAtMostTheCacheTimeThenRefused() {
        ApiKeyStore.Created created = store.create("acme", "", Set.of(Scope.SUBMIT));
        byte[] digest = ApiKeys.sha256(created.key());
        MutableClock clock = new MutableClock(Instant.parse("2030-01-01T00:00:00Z"));
        KeyAuthenticator keys = authenticator(clock);
        assertThat(keys.fromMemory(digest)).as("not looked up yet").isEmpty();
        assertThat(keys.fromStore(digest)).isPresent();

        store.revoke(created.row().id()); // elsewhere: another coordinator, the CLI
        clock.advance(TTL.minusMillis(1));
        assertThat(keys.fromMemory(digest)).as("still cached: no query per request").isPresent();
        clock.advance(Duration.ofMillis(1));
        assertThat(keys.fromMemory(digest)).as("the cache time is the bound").isEmpty();
        assertThat(keys.fromStore(digest)).isEmpty();
    }

    @Test
    void forgettingARevokedKeyRefusesItAtOnce() {
        ApiKeyStore.Created created = store.create("acme", "", Set.of(Scope.READ));
        byte[] digest = ApiKeys.sha256(created.key());
        KeyAuthenticator keys = authenticator(Clock.systemUTC());
        keys.fromStore(digest);
        store.revoke(created.row().id());
        keys.forget(created.row().id());
        assertThat(keys.fromMemory(digest)).isEmpty();
        assertThat(keys.fromStore(digest)).isEmpty();
    }

    @Test
    void useIsRecordedAndRevocationKeepsItsFirstTime() {
        ApiKeyStore.Created created = store.create("acme", "", Set.of(Scope.READ));
        assertThat(created.row().lastUsedAt()).isNull();
        authenticator(Clock.systemUTC()).fromStore(ApiKeys.sha256(created.key()));
        ApiKeyStore.KeyRow revoked = store.revoke(created.row().id()).orElseThrow();
        assertThat(revoked.lastUsedAt()).isNotNull();
        assertThat(store.revoke(created.row().id()).orElseThrow().revokedAt()).isEqualTo(revoked.revokedAt());
        assertThat(store.revoke(Long.MAX_VALUE)).isEmpty();
        assertThat(HexFormat.of().formatHex(ApiKeys.sha256(created.key()))).hasSize(64);
    }

    @Test
    void theCacheTimeIsValidatedByName() {
        assertThat(KeyAuthenticator.cacheTtl(Env.of(Map.of()))).isEqualTo(Duration.ofSeconds(5));
        assertThat(KeyAuthenticator.cacheTtl(Env.of(Map.of(KeyAuthenticator.CACHE_VARIABLE, "0.5")))).isEqualTo(Duration.ofMillis(500));
        assertThat(KeyAuthenticator.cacheTtl(Env.of(Map.of(KeyAuthenticator.CACHE_VARIABLE, "0")))).isZero();
        for (String bad : List.of("abc", "-1", "301")) {
            assertThatThrownBy(() -> KeyAuthenticator.cacheTtl(Env.of(Map.of(KeyAuthenticator.CACHE_VARIABLE, bad))))
                    .isInstanceOf(ConfigException.class).hasMessageStartingWith(KeyAuthenticator.CACHE_VARIABLE + "=" + bad);
        }
    }

    /** A clock the test moves. */
    static final class MutableClock extends Clock {
        private volatile Instant now;

        MutableClock(Instant start) {
            this.now = start;
        }

        void advance(Duration by) {
            now = now.plus(by);
        }

        @Override
        public ZoneId getZone() {
            return ZoneOffset.UTC;
        }

        @Override
        public Clock withZone(ZoneId zone) {
            return this;
        }

        @Override
        public Instant instant() {
            return now;
        }
    }
}
