package dev.kage.store;

import org.jdbi.v3.core.argument.Argument;

/**
 * Array parameters in pgjdbc's binary format. Jdbi's {@code bindArray} hands the driver an {@code Object[]}, which pgjdbc
 * writes as an array literal, quoting and escaping every element char by char, and Postgres parses back: for a batch of
 * 1,000 tasks, about a tenth of the coordinator's request CPU. A {@code String[]} ({@code text}, {@code varchar}),
 * {@code Long[]} ({@code int8}) or {@code Integer[]} ({@code int4}) given to the driver's own {@code createArrayOf} goes
 * in binary, nulls included. pgjdbc has no binary {@code uuid[]} or {@code numeric[]}: bind ids as text and cast them in
 * the statement ({@code CAST(:ids AS uuid[])}). pgjdbc's binary arrays arrive with lower bound 0 ({@code [0:n-1]}): right
 * for {@code unnest} and {@code = ANY}, wrong for {@code :arr[1]}, {@code array_lower} or an array stored in a column.
 * Stateless; thread-safe.
 */
final class SqlArrays {
    private SqlArrays() {
    }

    /**
     * @param elementType the element's type name as Postgres knows it: {@code text}, {@code int8}, {@code int4}
     * @param values      {@code String[]}, {@code Long[]} or {@code Integer[]} (other arrays bind too, as text)
     */
    static Argument of(String elementType, Object[] values) {
        return (position, statement, context) ->
                statement.setArray(position, statement.getConnection().createArrayOf(elementType, values));
    }
}
