package dev.kage.coordinator.auth;

import dev.kage.store.Database;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.sql.Array;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Tenants' API keys in {@code api_keys}: created here with a random secret that is returned once and never stored
 * (only its SHA-256 and its first {@value #PREFIX_LENGTH} characters are), looked up by digest, listed, revoked.
 * Thread-safe (every call takes its own connection).
 */
public final class ApiKeyStore {
    /** A new key: this, then {@value #SECRET_LENGTH} base62 characters (about 190 random bits). */
    public static final String KEY_PREFIX = "kb_";
    public static final int SECRET_LENGTH = 32;
    /** Characters of a key kept in clear to tell keys apart in lists: {@code kb_} and the first 8 random ones. */
    public static final int PREFIX_LENGTH = KEY_PREFIX.length() + 8;
    private static final String ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    private static final String COLUMNS = "id, tenant, name, prefix, scopes, created_at, revoked_at, last_used_at";

    private final Database database;
    private final SecureRandom random = new SecureRandom();

    public ApiKeyStore(Database database) {
        this.database = database;
    }

    /**
     * Creates a key. The returned {@link Created#key()} is the only copy of the secret: show it once, never log it.
     *
     * @param tenant already validated ({@link ApiKeys#TENANT})
     * @param name   a label for people, may be empty
     * @param scopes at least one
     */
    public Created create(String tenant, String name, Set<Scope> scopes) {
        if (scopes.isEmpty()) {
            throw new IllegalArgumentException("a key needs at least one scope");
        }
        String key = newKey();
        KeyRow row = call(handle -> handle.createQuery("INSERT INTO api_keys (tenant, name, prefix, sha256, scopes) "
                        + "VALUES (:tenant, :name, :prefix, :sha256, :scopes) RETURNING " + COLUMNS)
                .bind("tenant", tenant)
                .bind("name", name)
                .bind("prefix", key.substring(0, PREFIX_LENGTH))
                .bind("sha256", ApiKeys.sha256(key))
                .bindArray("scopes", String.class, wire(scopes))
                .map((rs, ctx) -> row(rs)).one());
        return new Created(row, key);
    }

    /**
     * The active (not revoked) key whose SHA-256 is {@code digest}. The row is found through the unique index on the
     * digest; the digests are then compared again in constant time, so the answer never rests on the index alone.
     */
    public Optional<KeyRow> findActive(byte[] digest) {
        Optional<Found> found = call(handle -> handle.createQuery("SELECT " + COLUMNS + ", sha256 FROM api_keys "
                        + "WHERE sha256 = :sha256 AND revoked_at IS NULL")
                .bind("sha256", digest)
                .map((rs, ctx) -> new Found(row(rs), rs.getBytes("sha256"))).findOne());
        return found.filter(f -> MessageDigest.isEqual(f.digest(), digest)).map(Found::row);
    }

    /** Records that the key was used now, unless that was already recorded in the last minute (no hot row). */
    public void touch(long id) {
        call(handle -> handle.createUpdate("UPDATE api_keys SET last_used_at = now() WHERE id = :id "
                        + "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')")
                .bind("id", id).execute());
    }

    /** Every key, oldest first; only {@code tenant}'s when given. Revoked keys too. */
    public List<KeyRow> list(Optional<String> tenant) {
        return call(handle -> {
            var query = handle.createQuery("SELECT " + COLUMNS + " FROM api_keys"
                    + (tenant.isPresent() ? " WHERE tenant = :tenant" : "") + " ORDER BY id");
            tenant.ifPresent(t -> query.bind("tenant", t));
            return query.map((rs, ctx) -> row(rs)).list();
        });
    }

    /**
     * Revokes a key (a revoked key stays revoked: its first revocation time is kept).
     *
     * @return the key after revocation; empty when there is no such key
     */
    public Optional<KeyRow> revoke(long id) {
        return call(handle -> handle.createQuery("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
                        + "WHERE id = :id RETURNING " + COLUMNS)
                .bind("id", id)
                .map((rs, ctx) -> row(rs)).findOne());
    }

    /** Whether the key of this id exists and is not revoked. */
    public boolean isActive(long id) {
        return call(handle -> handle.createQuery("SELECT count(*) FROM api_keys WHERE id = :id AND revoked_at IS NULL")
                .bind("id", id).mapTo(Long.class).one()) > 0;
    }

    /** Keys not revoked. */
    public long activeCount() {
        return call(handle -> handle.createQuery("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
                .mapTo(Long.class).one());
    }

    private static final java.util.regex.Pattern STORED_FORM =
            java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(KEY_PREFIX) + "[0-9A-Za-z]{" + SECRET_LENGTH + "}");

    /** Whether {@code presented} has the form of a key this store makes: anything else is no stored key, unasked. */
    public static boolean couldBeStored(String presented) {
        return STORED_FORM.matcher(presented).matches();
    }

    private String newKey() {
        StringBuilder key = new StringBuilder(KEY_PREFIX);
        for (int i = 0; i < SECRET_LENGTH; i++) {
            key.append(ALPHABET.charAt(random.nextInt(ALPHABET.length())));
        }
        return key.toString();
    }

    private <T> T call(org.jdbi.v3.core.HandleCallback<T, RuntimeException> work) {
        return database.call(work);
    }

    private static List<String> wire(Set<Scope> scopes) {
        return EnumSet.copyOf(scopes).stream().map(Scope::wireName).toList();
    }

    private static KeyRow row(ResultSet rs) throws SQLException {
        Array array = rs.getArray("scopes");
        Set<Scope> scopes = EnumSet.noneOf(Scope.class);
        for (String name : (String[]) array.getArray()) {
            // A scope a newer coordinator wrote and this one does not know grants nothing here.
            Scope.fromWire(name).ifPresent(scopes::add);
        }
        return new KeyRow(rs.getLong("id"), rs.getString("tenant"), rs.getString("name"), rs.getString("prefix"),
                Set.copyOf(scopes), instant(rs, "created_at"), instant(rs, "revoked_at"), instant(rs, "last_used_at"));
    }

    private static Instant instant(ResultSet rs, String column) throws SQLException {
        OffsetDateTime value = rs.getObject(column, OffsetDateTime.class);
        return value == null ? null : value.toInstant();
    }

    /**
     * A key as lists show it: never the secret nor its digest.
     *
     * @param prefix     the key's first {@value #PREFIX_LENGTH} characters
     * @param revokedAt  {@code null} while the key is active
     * @param lastUsedAt {@code null} when never used; recorded at most once a minute
     */
    public record KeyRow(long id, String tenant, String name, String prefix, Set<Scope> scopes, Instant createdAt,
                         Instant revokedAt, Instant lastUsedAt) {
        public Principal principal() {
            return new Principal(tenant, scopes, id);
        }
    }

    /** A new key: its row and the secret, shown once. */
    public record Created(KeyRow row, String key) {
        @Override
        public String toString() {
            return "Created[" + row + ", key=" + row.prefix() + "…]";
        }
    }

    private record Found(KeyRow row, byte[] digest) {
    }
}
