package dev.kage.coordinator.auth;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import java.math.BigDecimal;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.HexFormat;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Finds the {@link Principal} of a presented key's SHA-256: first the keys of the environment ({@link ApiKeys}), then
 * the database's ({@link ApiKeyStore}) through a short cache, so the hot submit path does not query Postgres per
 * request. Only positive answers are cached (a new key works at once); an entry lives
 * {@value #CACHE_VARIABLE} seconds (default 5), so <b>a key revoked anywhere is refused by every coordinator within
 * that time</b>, and at once by the coordinator that revoked it ({@link #forget(long)}). Thread-safe.
 */
public final class KeyAuthenticator {
    public static final String CACHE_VARIABLE = "KAGE_API_KEY_CACHE_SECONDS";
    public static final Duration DEFAULT_CACHE_TTL = Duration.ofSeconds(5);
    /** Longest cache time accepted: revocation must not wait longer than this. */
    public static final Duration MAX_CACHE_TTL = Duration.ofMinutes(5);
    /** Cached keys at most; past it, expired entries are dropped and, if still full, new lookups are not cached. */
    static final int MAX_CACHED = 10_000;

    private final ApiKeys environment;
    private final ApiKeyStore store;
    private final Clock clock;
    private final Duration ttl;
    private final ConcurrentHashMap<String, Cached> cache = new ConcurrentHashMap<>();

    public KeyAuthenticator(ApiKeys environment, ApiKeyStore store, Clock clock, Duration ttl) {
        this.environment = environment;
        this.store = store;
        this.clock = clock;
        this.ttl = ttl;
    }

    /** {@value #CACHE_VARIABLE}: seconds (a decimal, 0 disables the cache), at most {@link #MAX_CACHE_TTL}. */
    public static Duration cacheTtl(Env env) {
        Optional<String> raw = env.get(CACHE_VARIABLE);
        if (raw.isEmpty()) {
            return DEFAULT_CACHE_TTL;
        }
        try {
            BigDecimal seconds = new BigDecimal(raw.get().trim());
            if (seconds.signum() >= 0 && seconds.compareTo(BigDecimal.valueOf(MAX_CACHE_TTL.toSeconds())) <= 0) {
                return Duration.ofMillis(seconds.movePointRight(3).longValue());
            }
        } catch (NumberFormatException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(CACHE_VARIABLE + "=" + raw.get() + ": must be a number of seconds from 0 to "
                + MAX_CACHE_TTL.toSeconds() + " (default " + DEFAULT_CACHE_TTL.toSeconds() + "); it bounds how long a revoked key "
                + "is still accepted");
    }

    /** What is known without a database query: an environment key, or a database key cached less than the TTL ago. */
    public Optional<Principal> fromMemory(byte[] digest) {
        Optional<Principal> configured = environment.principalOf(digest);
        if (configured.isPresent()) {
            return configured;
        }
        String id = HexFormat.of().formatHex(digest);
        Cached cached = cache.get(id);
        if (cached == null) {
            return Optional.empty();
        }
        if (!clock.instant().isBefore(cached.expiresAt())) {
            cache.remove(id, cached);
            return Optional.empty();
        }
        return Optional.of(cached.principal());
    }

    /**
     * Asks the database (blocking: call it off the event loop) for an active key with this digest, and caches a hit.
     *
     * @throws dev.kage.store.StoreException when Postgres cannot answer
     */
    public Optional<Principal> fromStore(byte[] digest) {
        Optional<ApiKeyStore.KeyRow> row = store.findActive(digest);
        if (row.isEmpty()) {
            return Optional.empty();
        }
        Instant now = clock.instant();
        if (row.get().lastUsedAt() == null || row.get().lastUsedAt().isBefore(now.minusSeconds(60))) {
            store.touch(row.get().id());
        }
        Principal principal = row.get().principal();
        if (!ttl.isZero() && roomInCache(now)) {
            cache.put(HexFormat.of().formatHex(digest), new Cached(principal, now.plus(ttl)));
        }
        return Optional.of(principal);
    }

    /**
     * Whether the key a long-lived request (an event stream) was let in with is still good: a key from
     * {@code KAGE_API_KEYS} always is; a stored one is asked of Postgres (blocking), and counts as good while Postgres
     * cannot answer (an outage does not end every stream).
     */
    public boolean stillActive(Principal principal) {
        if (principal.keyId() == null) {
            return true;
        }
        try {
            return store.isActive(principal.keyId());
        } catch (dev.kage.store.StoreException e) {
            return true;
        }
    }

    /** Drops a revoked key from this coordinator's cache, so it is refused here at once. */
    public void forget(long keyId) {
        cache.values().removeIf(c -> c.principal().keyId() != null && c.principal().keyId() == keyId);
    }

    public Duration cacheTtl() {
        return ttl;
    }

    private boolean roomInCache(Instant now) {
        if (cache.size() < MAX_CACHED) {
            return true;
        }
        cache.values().removeIf(c -> !now.isBefore(c.expiresAt()));
        return cache.size() < MAX_CACHED;
    }

    private record Cached(Principal principal, Instant expiresAt) {
    }
}
