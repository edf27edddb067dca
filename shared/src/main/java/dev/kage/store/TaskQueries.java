package dev.kage.store;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.task.Priority;
import dev.kage.task.TaskStatus;
import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeParseException;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import org.jdbi.v3.core.JdbiException;
import org.jdbi.v3.core.statement.Query;

/**
 * Read-only listings of {@code tasks} for the API: one tenant's tasks, newest first, filtered and paged
 * by key (never by offset, so a page stays correct while tasks are being submitted). Thread-safe.
 *
 * <p>The listing reads best with an index on {@code (tenant, created_at DESC, id DESC)}, and, for open statuses only,
 * with the same index on open tasks (V3, V13).
 */
public final class TaskQueries {
    /** Rows per page when the caller names no limit. */
    public static final int DEFAULT_LIMIT = 20;
    /** Most rows one page may hold. */
    public static final int MAX_LIMIT = 100;
    /** Characters of the description a listing row carries. */
    public static final int DESCRIPTION_CHARS = 200;

    private static final ObjectMapper JSON = new ObjectMapper();

    // Filters are appended as fixed fragments; every value is a bound parameter.
    private static final String SELECT = """
            SELECT t.id, t.status, left(t.description, %d) AS description, t.priority,
                   ARRAY(SELECT a.value ->> 'cli_name'
                         FROM jsonb_array_elements(t.cli_assignments) WITH ORDINALITY AS a(value, n)
                         ORDER BY a.n) AS agents,
                   t.created_at, t.updated_at, t.completed_at
            FROM tasks t
            WHERE t.tenant = :tenant
            """.formatted(DESCRIPTION_CHARS);
    private static final String BY_STATUS = "  AND t.status = ANY(:statuses)\n";
    /**
     * Added when every status asked for is open: the literal predicate of the open tasks' partial index
     * ({@code tasks_open_tenant_created_id_idx}), which a bound array cannot prove. Without it, listing a tenant's few
     * open tasks read its whole index, newest first, through every ended task.
     */
    private static final String OPEN = "  AND t.status IN ('queued', 'running')\n";
    private static final String BY_AGENT = "  AND t.cli_assignments @> CAST(:agentAssignment AS jsonb)\n";
    private static final String SINCE = "  AND t.created_at >= CAST(:since AS timestamptz)\n";
    private static final String AFTER = "  AND (t.created_at, t.id) < (CAST(:cursorAt AS timestamptz), :cursorId)\n";
    private static final String ORDER = "ORDER BY t.created_at DESC, t.id DESC\nLIMIT :limit\n";

    private final Database database;

    public TaskQueries(Database database) {
        this.database = database;
    }

    /**
     * One page of the tenant's tasks, newest first.
     *
     * @return the rows and, when more rows follow, the cursor of the last one
     */
    public Page list(TaskFilter filter) {
        String sql = sql(filter);
        List<TaskRow> rows;
        try {
            rows = database.jdbi().withHandle(handle -> bind(handle.createQuery(sql), filter).map((rs, ctx) -> row(rs)).list());
        } catch (JdbiException e) {
            throw new StoreException("Postgres: " + e.getMessage(), e);
        }
        if (rows.size() <= filter.limit()) {
            return new Page(rows, Optional.empty());
        }
        List<TaskRow> page = rows.subList(0, filter.limit());
        TaskRow last = page.get(page.size() - 1);
        return new Page(List.copyOf(page), Optional.of(new Cursor(last.createdAt(), last.id())));
    }

    /** The statement that reads {@code filter}'s page (one row more than its limit, to tell whether more follow). */
    static String sql(TaskFilter filter) {
        StringBuilder sql = new StringBuilder(SELECT);
        if (!filter.statuses().isEmpty()) {
            if (filter.statuses().stream().noneMatch(TaskStatus::isFinal)) {
                sql.append(OPEN);
            }
            sql.append(BY_STATUS);
        }
        filter.agent().ifPresent(a -> sql.append(BY_AGENT));
        filter.since().ifPresent(s -> sql.append(SINCE));
        filter.after().ifPresent(c -> sql.append(AFTER));
        return sql.append(ORDER).toString();
    }

    /** Binds {@code filter}'s values to a query of {@link #sql}. */
    static Query bind(Query query, TaskFilter filter) {
        query.bind("tenant", filter.tenant()).bind("limit", filter.limit() + 1);
        if (!filter.statuses().isEmpty()) {
            query.bindArray("statuses", String.class, filter.statuses().stream().map(TaskStatus::wireName).toList());
        }
        filter.agent().ifPresent(a -> query.bind("agentAssignment", assignmentOf(a)));
        filter.since().ifPresent(s -> query.bind("since", s.atOffset(ZoneOffset.UTC)));
        filter.after().ifPresent(c -> query.bind("cursorAt", c.createdAt().atOffset(ZoneOffset.UTC)).bind("cursorId", c.id()));
        return query;
    }

    private static String assignmentOf(String agent) {
        try {
            return JSON.writeValueAsString(List.of(Map.of("cli_name", agent)));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static TaskRow row(ResultSet rs) throws SQLException {
        Array agents = rs.getArray("agents");
        List<String> names = agents == null ? List.of() : List.of((String[]) agents.getArray());
        return new TaskRow(
                rs.getObject("id", UUID.class),
                TaskStatus.fromWireName(rs.getString("status")).orElseThrow(
                        () -> new IllegalStateException("tasks.status holds an unknown status")),
                rs.getString("description"),
                Priority.fromWireName(rs.getString("priority")).orElse(Priority.NORMAL),
                names,
                instant(rs, "created_at"),
                instant(rs, "updated_at"),
                instant(rs, "completed_at"));
    }

    private static Instant instant(ResultSet rs, String column) throws SQLException {
        OffsetDateTime value = rs.getObject(column, OffsetDateTime.class);
        return value == null ? null : value.toInstant();
    }

    /**
     * What to list. Immutable.
     *
     * @param statuses only tasks in one of these states; empty for every state
     * @param agent    only tasks assigned to this agent
     * @param since    only tasks created at or after this instant
     * @param after    only tasks after this position of the order (the previous page's cursor)
     * @param limit    rows per page, 1 to {@link #MAX_LIMIT}
     */
    public record TaskFilter(String tenant, Set<TaskStatus> statuses, Optional<String> agent, Optional<Instant> since,
                             Optional<Cursor> after, int limit) {
        public TaskFilter {
            if (limit < 1 || limit > MAX_LIMIT) {
                throw new IllegalArgumentException("limit=" + limit + ": must be 1.." + MAX_LIMIT);
            }
            statuses = Set.copyOf(statuses);
        }
    }

    /**
     * One listed task. Immutable.
     *
     * @param description the first {@link #DESCRIPTION_CHARS} characters
     * @param agents      the assigned agents, in the order submitted
     */
    public record TaskRow(UUID id, TaskStatus status, String description, Priority priority, List<String> agents,
                          Instant createdAt, Instant updatedAt, Instant completedAt) {
        public TaskRow {
            agents = List.copyOf(agents);
        }
    }

    /**
     * @param next the position to continue after, absent on the last page
     */
    public record Page(List<TaskRow> rows, Optional<Cursor> next) {
    }

    /**
     * A position in the listing order {@code (created_at DESC, id DESC)}: the last row a page held. Its
     * wire form is opaque to callers: base64url of {@code <created_at ISO-8601>|<id>}.
     */
    /**
     * The earliest and latest instants a listing takes (as {@code since}, or in a cursor): the years 0001 to 9999.
     * Postgres's {@code timestamptz} ends in the year 294276; an instant past it failed the query (a false 503).
     */
    public static final Instant EARLIEST_INSTANT = Instant.parse("0001-01-01T00:00:00Z");
    public static final Instant LATEST_INSTANT = Instant.parse("9999-12-31T23:59:59.999999Z");

    public record Cursor(Instant createdAt, UUID id) {

        public String encode() {
            return Base64.getUrlEncoder().withoutPadding()
                    .encodeToString((createdAt + "|" + id).getBytes(StandardCharsets.UTF_8));
        }

        /**
         * The cursor a previous page handed out; empty when the text is not one. An instant outside the years 0001 to
         * 9999 is none either: no row carries it, and Postgres refuses one past its range (the query failed, a false 503).
         */
        public static Optional<Cursor> decode(String text) {
            try {
                String plain = new String(Base64.getUrlDecoder().decode(text), StandardCharsets.UTF_8);
                int bar = plain.indexOf('|');
                if (bar < 0) {
                    return Optional.empty();
                }
                Instant createdAt = Instant.parse(plain.substring(0, bar));
                if (createdAt.isBefore(EARLIEST_INSTANT) || createdAt.isAfter(LATEST_INSTANT)) {
                    return Optional.empty();
                }
                return Optional.of(new Cursor(createdAt, UUID.fromString(plain.substring(bar + 1))));
            } catch (IllegalArgumentException | DateTimeParseException e) {
                return Optional.empty();
            }
        }
    }
}
