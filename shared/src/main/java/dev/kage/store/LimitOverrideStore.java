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
    public static final int LOCK_SPACE = 0x6b4c494d;

    /** How long a change waits for its group's lock, in this process and then in Postgres, before giving up. */
    static final java.time.Duration LOCK_WAIT = java.time.Duration.ofSeconds(5);

    /**
     * This process's changes waiting for a group, so that only one of them at a time holds a pooled connection while it
     * waits for the group's Postgres lock (waiters each holding one could take the whole pool from the submits).
     */
    private final java.util.concurrent.ConcurrentHashMap<String, java.util.concurrent.locks.ReentrantLock> local =
            new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * Runs {@code change} while holding the group's lock, which every coordinator sharing this database takes for a
     * change of that group's limit: changes of one group are made one at a time, each reading the limit in force and
     * writing both copies (this table, then Redis) before the next begins. Without it, a {@code PUT} and a {@code DELETE}
     * (or two {@code PUT}s, or a reconciler restoring the stored change) crossing each other could leave Postgres holding
     * one change and Redis another, until Redis next restarted.
     *
     * <p>The lock is first this process's (one waiter per group holds a connection), then a Postgres session-level
     * advisory lock on the handle {@code change} writes through (each write committed at once); released when
     * {@code change} returns or throws, and by Postgres if the session dies. Each wait is bounded by {@link #LOCK_WAIT}
     * (in Postgres, {@code lock_timeout}).
     *
     * @throws GroupBusyException when the lock was not had within {@link #LOCK_WAIT} (here, or then in Postgres)
     * @throws StoreException      when Postgres is away
     */
    public <T> T changing(String group, java.util.function.Function<Change, T> change) {
        java.util.concurrent.locks.ReentrantLock mine = local.computeIfAbsent(group,
                g -> new java.util.concurrent.locks.ReentrantLock(true));
        try {
            if (!mine.tryLock(LOCK_WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
                throw new GroupBusyException(group);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new StoreException("interrupted while waiting to change limit group " + group, e);
        }
        try {
            return callWaiting(group, handle -> {
                handle.useTransaction(tx -> {
                    // SET LOCAL: the bound lasts this transaction only; the session lock taken in it outlives its commit.
                    tx.execute("SET LOCAL lock_timeout = '" + LOCK_WAIT.toMillis() + "ms'");
                    tx.createQuery("SELECT pg_advisory_lock(:space, hashtext(:key))::text")
                            .bind("space", LOCK_SPACE).bind("key", lockKey(group)).mapTo(String.class).one();
                });
                return underLock(handle, group, lockKey(group), change);
            });
        } finally {
            mine.unlock();
        }
    }

    /**
     * What the group's Postgres lock is keyed by (hashed), with {@link #LOCK_SPACE}: the schema and the group, since
     * advisory locks are the database's, and deployments in other schemas of it have groups of their own.
     */
    public String lockKey(String group) {
        return database.schema() + '/' + group;
    }

    /** {@link #call}, a Postgres {@code lock_timeout} (SQLSTATE 55P03) answered as {@link GroupBusyException}. */
    private <T> T callWaiting(String group, org.jdbi.v3.core.HandleCallback<T, RuntimeException> work) {
        try {
            return call(work);
        } catch (StoreException e) {
            for (Throwable cause = e; cause != null; cause = cause.getCause()) {
                if (cause instanceof java.sql.SQLException sql && "55P03".equals(sql.getSQLState())) {
                    throw new GroupBusyException(group);
                }
            }
            throw e;
        }
    }

    /** A change of the group waited {@link #LOCK_WAIT} for another change of it (here or on another coordinator). */
    public static final class GroupBusyException extends dev.kage.KageException {
        public GroupBusyException(String group) {
            super("limit group " + group + " is being changed by another request; try again", true);
        }
    }

    /** {@code change} on a handle holding the group's session lock, which this releases whatever becomes of it. */
    private static <T> T underLock(org.jdbi.v3.core.Handle handle, String group, String key,
                                   java.util.function.Function<Change, T> change) {
        T result;
        try {
            result = change.apply(new Change() {
                @Override
                public java.util.Optional<Limit> stored() {
                    return handle.createQuery("SELECT requests, window_ms, tokens, guard_ms FROM limit_overrides "
                                    + "WHERE limit_group = :group")
                            .bind("group", group).map((rs, ctx) -> limit(rs)).findOne();
                }

                @Override
                public void save(Limit limit) {
                    LimitOverrideStore.save(handle, group, limit);
                }

                @Override
                public void delete() {
                    LimitOverrideStore.delete(handle, group);
                }
            });
        } catch (RuntimeException | Error e) {
            try {
                unlock(handle, group, key);
            } catch (RuntimeException unlock) {
                e.addSuppressed(unlock); // the change's own failure is what the caller answers
            }
            throw e;
        }
        unlock(handle, group, key);
        return result;
    }

    private static void unlock(org.jdbi.v3.core.Handle handle, String group, String key) {
        boolean held;
        try {
            held = handle.createQuery("SELECT pg_advisory_unlock(:space, hashtext(:key))")
                    .bind("space", LOCK_SPACE).bind("key", key).mapTo(Boolean.class).one();
        } catch (RuntimeException e) {
            // The session may still hold the lock, and Hikari does not reset a connection it takes back: drop every
            // advisory lock of the session if it still answers (if it does not, Postgres ends the session and its locks).
            try {
                handle.createQuery("SELECT pg_advisory_unlock_all()::text").mapTo(String.class).one();
            } catch (RuntimeException alsoThat) {
                e.addSuppressed(alsoThat);
            }
            throw e;
        }
        if (!held) {
            org.slf4j.LoggerFactory.getLogger(LimitOverrideStore.class)
                    .warn("Limit group {}'s lock was not held by its own change at the end", group);
        }
    }

    /** The writes of one group's change, made under its lock ({@link #changing}). Used by the caller's thread only. */
    public interface Change {
        /** The group's stored change, read under the lock. */
        java.util.Optional<Limit> stored();

        /** Keeps the group's changed limit (replacing an earlier change). */
        void save(Limit limit);

        /** The group is back to its configured limit. */
        void delete();
    }

    private static Limit limit(java.sql.ResultSet rs) throws java.sql.SQLException {
        return new Limit(rs.getLong("requests"), Duration.ofMillis(rs.getLong("window_ms")), rs.getLong("tokens"),
                Duration.ofMillis(rs.getLong("guard_ms")));
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

    private static void delete(org.jdbi.v3.core.Handle handle, String group) {
        handle.createUpdate("DELETE FROM limit_overrides WHERE limit_group = :group").bind("group", group).execute();
    }

    /** Every changed limit, by group. */
    public Map<String, Limit> all() {
        return call(handle -> {
            Map<String, Limit> limits = new LinkedHashMap<>();
            handle.createQuery("SELECT limit_group, requests, window_ms, tokens, guard_ms FROM limit_overrides ORDER BY limit_group")
                    .map((rs, ctx) -> Map.entry(rs.getString("limit_group"), limit(rs)))
                    .forEach(e -> limits.put(e.getKey(), e.getValue()));
            return limits;
        });
    }

    private <T> T call(org.jdbi.v3.core.HandleCallback<T, RuntimeException> work) {
        return database.call(work);
    }
}
