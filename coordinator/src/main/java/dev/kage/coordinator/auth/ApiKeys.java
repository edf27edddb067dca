package dev.kage.coordinator.auth;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The API keys configured in the environment and the tenant each belongs to (keys kept in Postgres are
 * {@link ApiKeyStore}'s). Only SHA-256 digests are kept in memory; a presented key's digest is compared with every
 * digest in constant time. Immutable and thread-safe.
 *
 * <p>{@code KAGE_API_KEYS} lists {@code tenant:key} pairs separated by commas (a bare {@code key} belongs to tenant
 * {@code default}). Such a key has scopes {@code submit} and {@code read}, and {@code admin} when its tenant is in
 * {@code KAGE_ADMIN_TENANTS}. {@code KAGE_DEV_MODE=true} also accepts the seed's {@value #DEV_KEY} for tenant
 * {@code default} (an admin), with a warning at start. Neither is required when the database holds an active key
 * ({@link dev.kage.coordinator.CoordinatorStartup} checks).
 */
public final class ApiKeys {
    public static final String DEV_KEY = "dev-key-12345";
    public static final String DEFAULT_TENANT = "default";
    /** What a tenant's name may be, everywhere a name is given (env, API, CLI). */
    public static final Pattern TENANT = Pattern.compile("[A-Za-z0-9_.-]{1,64}");
    public static final String TENANT_RULE = "1-64 letters, digits, '.', '_' or '-'";
    /** The start-up refusal when no key can be accepted; names the variable. */
    public static final String NO_KEYS = "KAGE_API_KEYS is not set and the database holds no active API key: give tenant:key "
            + "pairs (e.g. KAGE_API_KEYS=acme:s3cret-key), create a key with `ops/kage-admin.sh keys create --tenant acme "
            + "--scopes submit,read,admin`, or set KAGE_DEV_MODE=true to accept the development key " + DEV_KEY;

    private final List<Entry> entries;
    private final boolean devMode;

    private ApiKeys(List<Entry> entries, boolean devMode) {
        this.entries = List.copyOf(entries);
        this.devMode = devMode;
    }

    public static ApiKeys load(Env env) {
        boolean devMode = env.bool("KAGE_DEV_MODE", false);
        Set<String> admins = new HashSet<>();
        for (String item : env.string("KAGE_ADMIN_TENANTS", "").split(",")) {
            String tenant = item.trim();
            if (tenant.isEmpty()) {
                continue;
            }
            if (!TENANT.matcher(tenant).matches()) {
                throw new ConfigException("KAGE_ADMIN_TENANTS: tenant '" + tenant + "' must be " + TENANT_RULE);
            }
            admins.add(tenant);
        }
        if (devMode) {
            admins.add(DEFAULT_TENANT);
        }
        List<Entry> entries = new ArrayList<>();
        for (String item : env.string("KAGE_API_KEYS", "").split(",")) {
            String trimmed = item.trim();
            if (trimmed.isEmpty()) {
                continue;
            }
            int colon = trimmed.indexOf(':');
            String tenant = colon > 0 ? trimmed.substring(0, colon) : DEFAULT_TENANT;
            String key = colon > 0 ? trimmed.substring(colon + 1) : trimmed;
            if (!TENANT.matcher(tenant).matches()) {
                throw new ConfigException("KAGE_API_KEYS: tenant '" + tenant + "' must be " + TENANT_RULE);
            }
            if (key.length() < 8) {
                throw new ConfigException("KAGE_API_KEYS: the key of tenant '" + tenant + "' is shorter than 8 characters");
            }
            entries.add(new Entry(new Principal(tenant, scopes(admins.contains(tenant)), null), sha256(key)));
        }
        if (devMode) {
            entries.add(new Entry(new Principal(DEFAULT_TENANT, Scope.ALL, null), sha256(DEV_KEY)));
        }
        return new ApiKeys(entries, devMode);
    }

    private static Set<Scope> scopes(boolean admin) {
        return admin ? Scope.ALL : EnumSet.of(Scope.SUBMIT, Scope.READ);
    }

    /** Whether no key is configured in the environment (nor the dev key): then only database keys can be used. */
    public boolean isEmpty() {
        return entries.isEmpty();
    }

    /** The configured key whose SHA-256 is {@code digest}, compared with every entry in constant time. */
    public Optional<Principal> principalOf(byte[] digest) {
        Principal match = null;
        for (Entry entry : entries) {
            // Check every entry so timing does not reveal which one matched.
            if (MessageDigest.isEqual(entry.digest(), digest) && match == null) {
                match = entry.principal();
            }
        }
        return Optional.ofNullable(match);
    }

    public boolean devMode() {
        return devMode;
    }

    /** SHA-256 of the key's UTF-8 bytes, 32 bytes. */
    public static byte[] sha256(String key) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private record Entry(Principal principal, byte[] digest) {
    }
}
