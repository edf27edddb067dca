package dev.kage.coordinator.auth;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * The API keys the coordinator accepts and the tenant each belongs to. Only SHA-256 digests are kept
 * in memory; a presented key is hashed and compared with every digest in constant time. Immutable and
 * thread-safe.
 *
 * <p>{@code KAGE_API_KEYS} lists {@code tenant:key} pairs separated by commas (a bare {@code key}
 * belongs to tenant {@code default}). {@code KAGE_DEV_MODE=true} also accepts the seed's
 * {@value #DEV_KEY} for tenant {@code default}, with a warning at start. With neither, start-up fails.
 */
public final class ApiKeys {
    public static final String DEV_KEY = "dev-key-12345";
    public static final String DEFAULT_TENANT = "default";
    private static final Pattern TENANT = Pattern.compile("[A-Za-z0-9_.-]{1,64}");

    private final List<Entry> entries;
    private final boolean devMode;
    private final java.util.Set<String> adminTenants;

    private ApiKeys(List<Entry> entries, boolean devMode, java.util.Set<String> adminTenants) {
        this.entries = List.copyOf(entries);
        this.devMode = devMode;
        this.adminTenants = java.util.Set.copyOf(adminTenants);
    }

    /**
     * Whether {@code tenant} may change what the whole fleet shares (rate limits): the tenants in
     * {@code KAGE_ADMIN_TENANTS}, and in dev mode tenant {@code default}.
     */
    public boolean isAdmin(String tenant) {
        return adminTenants.contains(tenant);
    }

    public static ApiKeys load(Env env) {
        boolean devMode = env.bool("KAGE_DEV_MODE", false);
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
                throw new ConfigException("KAGE_API_KEYS: tenant '" + tenant + "' must be 1-64 letters, digits, '.', '_' or '-'");
            }
            if (key.length() < 8) {
                throw new ConfigException("KAGE_API_KEYS: the key of tenant '" + tenant + "' is shorter than 8 characters");
            }
            entries.add(new Entry(tenant, sha256(key)));
        }
        if (devMode) {
            entries.add(new Entry(DEFAULT_TENANT, sha256(DEV_KEY)));
        }
        if (entries.isEmpty()) {
            throw new ConfigException("KAGE_API_KEYS is not set: give tenant:key pairs (e.g. KAGE_API_KEYS=acme:s3cret-key), "
                    + "or set KAGE_DEV_MODE=true to accept the development key " + DEV_KEY);
        }
        java.util.Set<String> admins = new java.util.HashSet<>();
        for (String item : env.string("KAGE_ADMIN_TENANTS", "").split(",")) {
            String tenant = item.trim();
            if (tenant.isEmpty()) {
                continue;
            }
            if (!TENANT.matcher(tenant).matches()) {
                throw new ConfigException("KAGE_ADMIN_TENANTS: tenant '" + tenant + "' must be 1-64 letters, digits, '.', '_' or '-'");
            }
            admins.add(tenant);
        }
        if (devMode) {
            admins.add(DEFAULT_TENANT);
        }
        return new ApiKeys(entries, devMode, admins);
    }

    /** The tenant of {@code presented}, or empty when no configured key matches. */
    public Optional<String> tenantOf(String presented) {
        if (presented == null || presented.isEmpty()) {
            return Optional.empty();
        }
        byte[] digest = sha256(presented);
        String match = null;
        for (Entry entry : entries) {
            // Check every entry so timing does not reveal which one matched.
            if (MessageDigest.isEqual(entry.digest(), digest) && match == null) {
                match = entry.tenant();
            }
        }
        return Optional.ofNullable(match);
    }

    public boolean devMode() {
        return devMode;
    }

    static byte[] sha256(String key) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private record Entry(String tenant, byte[] digest) {
    }
}
