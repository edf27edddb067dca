package dev.kage.store;

import dev.kage.ratelimit.Limit;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The rate limits operators changed at run time ({@code limit_overrides}), by limit group: the copy that survives a
 * Redis that lost its data. Thread-safe.
 */
public final class LimitOverrideStore {
    private final Database database;

    public LimitOverrideStore(Database database) {
        this.database = database;
    }

    /** Keeps the group's changed limit (replacing an earlier change). */
    public void save(String group, Limit limit) {
        call(handle -> handle.createUpdate("""
                        INSERT INTO limit_overrides (limit_group, requests, window_ms, tokens, guard_ms)
                        VALUES (:group, :requests, :window, :tokens, :guard)
                        ON CONFLICT (limit_group) DO UPDATE SET requests = EXCLUDED.requests, window_ms = EXCLUDED.window_ms,
                            tokens = EXCLUDED.tokens, guard_ms = EXCLUDED.guard_ms, updated_at = now()
                        """)
                .bind("group", group)
                .bind("requests", limit.requests())
                .bind("window", limit.window().toMillis())
                .bind("tokens", limit.tokens())
                .bind("guard", limit.guard().toMillis())
                .execute());
    }

    /** The group is back to its configured limit. */
    public void delete(String group) {
        call(handle -> handle.createUpdate("DELETE FROM limit_overrides WHERE limit_group = :group").bind("group", group).execute());
    }

    /** Every changed limit, by group. */
    public Map<String, Limit> all() {
        return call(handle -> {
            Map<String, Limit> limits = new LinkedHashMap<>();
            handle.createQuery("SELECT limit_group, requests, window_ms, tokens, guard_ms FROM limit_overrides ORDER BY limit_group")
                    .map((rs, ctx) -> Map.entry(rs.getString(1), new Limit(rs.getLong(2), Duration.ofMillis(rs.getLong(3)),
                            rs.getLong(4), Duration.ofMillis(rs.getLong(5)))))
                    .forEach(e -> limits.put(e.getKey(), e.getValue()));
            return limits;
        });
    }

    private <T> T call(org.jdbi.v3.core.HandleCallback<T, RuntimeException> work) {
        return database.call(work);
    }
}
