package dev.kage.store;

import dev.kage.budget.BudgetLedger;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The budget limits operators set for tenants at run time ({@code tenant_budget_limits}): the copy that survives a
 * Redis that lost its data. Fields as {@link BudgetLedger}'s tenant limits hash names them ({@link BudgetLedger#DAY_TOKENS},
 * ...; tokens, micro-USD, 0 for no limit); a field absent follows the fleet's defaults. Thread-safe.
 */
public final class TenantBudgetLimitStore {
    /** The first key of the advisory locks a change takes (the second is the tenant's hash): "kBUL". */
    public static final int LOCK_SPACE = 0x6b42554c;
    private static final Map<String, String> COLUMNS = Map.of(BudgetLedger.DAY_TOKENS, "day_tokens",
            BudgetLedger.DAY_USD, "day_usd_micros", BudgetLedger.MONTH_TOKENS, "month_tokens",
            BudgetLedger.MONTH_USD, "month_usd_micros");

    private final Database database;

    public TenantBudgetLimitStore(Database database) {
        this.database = database;
    }

    /** The writes of one tenant's change, made under its lock ({@link #changing}); the caller's thread only. */
    public interface Change {
        /** The tenant's stored limits, read under the lock; empty when none are set. */
        Optional<Map<String, Long>> stored();

        /** Sets these fields (others keep their value), as {@link BudgetLedger#setTenantLimits(String, Map)} does. */
        void set(Map<String, Long> fields);

        /** Back to the fleet's defaults. */
        void clear();
    }

    /**
     * Runs {@code change} in one transaction holding the tenant's lock, which every coordinator sharing this database
     * takes to change that tenant's limits: a change writes this table and then Redis (inside {@code change}) before
     * the next begins, so a {@code PUT} and a {@code DELETE} crossing each other (or the reconciler restoring the row)
     * cannot leave Postgres holding one change and Redis another. A {@code change} that throws (Redis refused) rolls
     * the table back; a commit that fails after Redis took the change leaves Redis ahead until the next restore (rare:
     * Postgres lost between two statements). Waits at most 5 s for the lock ({@code lock_timeout}: then a
     * {@link StoreException}, a 503), holding a pooled connection meanwhile: changes of one tenant's limits are an
     * operator's, rare and short.
     */
    public <T> T changing(String tenant, java.util.function.Function<Change, T> change) {
        return database.call(handle -> handle.inTransaction(tx -> {
            tx.execute("SET LOCAL lock_timeout = '5s'");
            tx.createQuery("SELECT pg_advisory_xact_lock(:space, hashtext(:key))::text")
                    .bind("space", LOCK_SPACE).bind("key", database.schema() + '/' + tenant).mapTo(String.class).one();
            return change.apply(new Change() {
                @Override
                public Optional<Map<String, Long>> stored() {
                    return tx.createQuery("SELECT * FROM tenant_budget_limits WHERE tenant = :tenant").bind("tenant", tenant)
                            .map((rs, ctx) -> fields(rs)).findOne();
                }

                @Override
                public void set(Map<String, Long> fields) {
                    if (fields.isEmpty()) {
                        return;
                    }
                    Map<String, Long> columns = new LinkedHashMap<>();
                    fields.forEach((field, value) -> {
                        String column = COLUMNS.get(field);
                        if (column == null || value == null || value < 0) {
                            throw new IllegalArgumentException("not a tenant limit: " + field + "=" + value);
                        }
                        columns.put(column, value);
                    });
                    // Column names from the fixed map above, values bound.
                    StringBuilder sql = new StringBuilder("INSERT INTO tenant_budget_limits (tenant");
                    columns.keySet().forEach(c -> sql.append(", ").append(c));
                    sql.append(") VALUES (:tenant");
                    columns.keySet().forEach(c -> sql.append(", :").append(c));
                    sql.append(") ON CONFLICT (tenant) DO UPDATE SET updated_at = now()");
                    columns.keySet().forEach(c -> sql.append(", ").append(c).append(" = EXCLUDED.").append(c));
                    var update = tx.createUpdate(sql.toString()).bind("tenant", tenant);
                    columns.forEach(update::bind);
                    update.execute();
                }

                @Override
                public void clear() {
                    tx.createUpdate("DELETE FROM tenant_budget_limits WHERE tenant = :tenant").bind("tenant", tenant).execute();
                }
            });
        }));
    }

    /** Every tenant with limits set, by name. */
    public Map<String, Map<String, Long>> all() {
        return database.call(handle -> handle.createQuery("SELECT * FROM tenant_budget_limits ORDER BY tenant")
                .map((rs, ctx) -> Map.entry(rs.getString("tenant"), fields(rs))).list().stream()
                .collect(java.util.stream.Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue, (a, b) -> a, LinkedHashMap::new)));
    }

    private static Map<String, Long> fields(java.sql.ResultSet rs) throws java.sql.SQLException {
        Map<String, Long> fields = new LinkedHashMap<>();
        for (Map.Entry<String, String> column : COLUMNS.entrySet()) {
            long value = rs.getLong(column.getValue());
            if (!rs.wasNull()) {
                fields.put(column.getKey(), value);
            }
        }
        return fields;
    }
}
