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

    /** The first key of the advisory locks {@link #changing} takes (the second is the group's hash): "kage limits". */
    static final int LOCK_SPACE = 0x6b4c494d;

    /**
     * Runs {@code change} while holding the group's lock, which every coordinator sharing this database takes for a
     * change of that group's limit: changes of one group are made one at a time, each reading the limit in force and
     * writing both copies (this table, then Redis) before the next begins. Without it, a {@code PUT} and a {@code DELETE}
     * (or two {@code PUT}s) crossing each other could leave Postgres holding one change and Redis another, until Redis
     * next restarted. A Postgres session-level advisory lock on the handle {@code change} writes through (each write
     * committed at once, as before); released when it returns or throws, and by Postgres if the session dies. A wait for
     * it is bounded by the pool's {@code statement_timeout}.
     *
     * @throws StoreException when Postgres is away or the lock was not had in time
     */
    public <T> T changing(String group, java.util.function.Function<Change, T> change) {
        return call(handle -> {
            handle.createQuery("SELECT pg_advisory_lock(:space, hashtext(:group))::text")
                    .bind("space", LOCK_SPACE).bind("group", group).mapTo(String.class).one();
            try {
                return change.apply(new Change() {
                    @Override
                    public void save(Limit limit) {
                        LimitOverrideStore.save(handle, group, limit);
                    }

                    @Override
                    public void delete() {
                        LimitOverrideStore.delete(handle, group);
                    }
                });
            } finally {
                handle.createQuery("SELECT pg_advisory_unlock(:space, hashtext(:group))")
                        .bind("space", LOCK_SPACE).bind("group", group).mapTo(Boolean.class).one();
            }
        });
    }

    /** The writes of one group's change, made under its lock ({@link #changing}). Used by the caller's thread only. */
    public interface Change {
        /** Keeps the group's changed limit (replacing an earlier change). */
        void save(Limit limit);

        /** The group is back to its configured limit. */
        void delete();
    }

    /** Keeps the group's changed limit (replacing an earlier change). */
    public void save(String group, Limit limit) {
        call(handle -> {
            save(handle, group, limit);
            return null;
        });
    }

    private static void save(org.jdbi.v3.core.Handle handle, String group, Limit limit) {
        handle.createUpdate("""
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
                .execute();
    }

    /** The group is back to its configured limit. */
    public void delete(String group) {
        call(handle -> {
            delete(handle, group);
            return null;
        });
    }

    private static void delete(org.jdbi.v3.core.Handle handle, String group) {
        handle.createUpdate("DELETE FROM limit_overrides WHERE limit_group = :group").bind("group", group).execute();
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
