package dev.kage.store;

import static dev.kage.store.StoreTestData.task;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.store.TaskQueries.Cursor;
import dev.kage.store.TaskQueries.Page;
import dev.kage.store.TaskQueries.TaskFilter;
import dev.kage.store.TaskQueries.TaskRow;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class TaskQueriesTest {
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();
    private final TaskQueries queries = new TaskQueries(db.database());

    @AfterEach
    void cleanUp() {
        db.close();
    }

    @Test
    void pagesWalkTasksThatShareACreationInstantWithoutGapsOrDuplicates() {
        Instant base = Instant.parse("2025-03-01T12:00:00.123456Z");
        List<UUID> ids = new ArrayList<>();
        for (int i = 0; i < 25; i++) {
            TaskRecord t = task("acme", "demo");
            store.insert(t);
            // three tasks per instant, so the id decides the order inside each group
            setCreatedAt(t.id(), base.minusSeconds(i / 3));
            ids.add(t.id());
        }
        store.insert(task("globex", "demo"));

        List<UUID> seen = new ArrayList<>();
        Optional<Cursor> cursor = Optional.empty();
        int pages = 0;
        do {
            Page page = queries.list(new TaskFilter("acme", Set.of(), Optional.empty(), Optional.empty(), cursor, 7));
            page.rows().forEach(r -> seen.add(r.id()));
            cursor = page.next().map(c -> Cursor.decode(c.encode()).orElseThrow());
            pages++;
        } while (cursor.isPresent());

        assertThat(pages).isEqualTo(4);
        assertThat(seen).hasSize(25).doesNotHaveDuplicates().containsExactlyInAnyOrderElementsOf(ids);
        assertThat(seen).containsExactlyElementsOf(newestFirst());
    }

    @Test
    void filtersByStatusAgentAndCreationTime() {
        TaskRecord old = task("acme", "claude-code");
        TaskRecord both = task("acme", "claude-code", "demo");
        TaskRecord demo = task("acme", "demo");
        store.insert(old);
        store.insert(both);
        store.insert(demo);
        setCreatedAt(old.id(), Instant.parse("2020-01-01T00:00:00Z"));
        store.setStatus(demo.id(), TaskStatus.COMPLETED);

        assertThat(ids(filter(Set.of(), "demo", null))).containsExactlyInAnyOrder(both.id(), demo.id());
        assertThat(ids(filter(Set.of(TaskStatus.COMPLETED, TaskStatus.FAILED), null, null))).containsExactly(demo.id());
        assertThat(ids(filter(Set.of(TaskStatus.QUEUED), "claude-code", null))).containsExactlyInAnyOrder(old.id(), both.id());
        assertThat(ids(filter(Set.of(), null, Instant.parse("2021-01-01T00:00:00Z")))).containsExactlyInAnyOrder(both.id(), demo.id());
        assertThat(ids(filter(Set.of(), "no-such-agent", null))).isEmpty();

        TaskRow row = queries.list(filter(Set.of(), "demo", null)).rows().stream()
                .filter(r -> r.id().equals(both.id())).findFirst().orElseThrow();
        assertThat(row.agents()).containsExactly("claude-code", "demo");
    }

    @Test
    void aTenantsOpenTasksAreListedFromTheOpenTasksIndexHoweverManyOfItsTasksEnded() {
        // Three old open tasks under 20,000 newer ended ones, and another tenant's open task. Analyzed, as autovacuum
        // would. Newest first through the tenant's whole index, a page of open tasks read every ended task's entry.
        List<UUID> open = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            TaskRecord t = task("acme", "demo");
            store.insert(t);
            setCreatedAt(t.id(), Instant.parse("2020-01-01T00:00:00Z").plusSeconds(i));
            open.add(0, t.id());
        }
        store.setStatus(open.get(1), TaskStatus.RUNNING);
        store.insert(task("globex", "demo"));
        db.database().jdbi().useHandle(h -> {
            h.execute("""
                    INSERT INTO tasks (id, tenant, description, status, base_branch, cli_assignments, token_limit)
                    SELECT gen_random_uuid(), 'acme', 'old', 'completed', 'main', '[{"cli_name": "demo"}]', 1000
                    FROM generate_series(1, 20000)""");
            h.execute("ANALYZE tasks");
        });

        TaskFilter live = filter(Set.of(TaskStatus.QUEUED, TaskStatus.RUNNING), null, null);
        assertThat(ids(live)).containsExactlyElementsOf(open);
        assertThat(ids(filter(Set.of(TaskStatus.RUNNING), null, null))).containsExactly(open.get(1));
        assertThat(queries.list(filter(Set.of(TaskStatus.QUEUED, TaskStatus.COMPLETED), null, null)).rows())
                .as("with an ended status asked for, ended tasks are listed too").hasSize(TaskQueries.MAX_LIMIT)
                .extracting(TaskRow::status).containsOnly(TaskStatus.COMPLETED);
        // The plan a statement run often gets: Postgres may plan a prepared statement once for any values (a generic
        // plan), and a bound array of statuses proves nothing about a partial index's predicate then.
        for (TaskFilter filter : List.of(live, filter(Set.of(TaskStatus.RUNNING), null, null))) {
            String prepared = TaskQueries.sql(filter).replace(":tenant", "$1").replace(":statuses", "$2").replace(":limit", "$3");
            String statuses = filter.statuses().stream().map(TaskStatus::wireName).collect(java.util.stream.Collectors.joining(",", "{", "}"));
            List<String> lines = db.database().jdbi().withHandle(h -> {
                h.execute("PREPARE listing (text, text[], int) AS " + prepared);
                h.execute("SET plan_cache_mode = force_generic_plan");
                try {
                    return h.createQuery("EXPLAIN ANALYZE EXECUTE listing ('acme', '" + statuses + "', 101)").mapTo(String.class).list();
                } finally {
                    h.execute("DEALLOCATE listing");
                    h.execute("RESET plan_cache_mode");
                }
            });
            String plan = String.join("\n", lines);
            assertThat(plan).as(filter.statuses().toString()).contains("tasks_open_tenant_created_id_idx")
                    .doesNotContain("Seq Scan").doesNotContain("Sort").doesNotContainPattern("Rows Removed by Filter: [0-9]{2,}");
        }
    }

    @Test
    void aCursorSurvivesItsWireFormAndRejectsGarbage() {
        Cursor cursor = new Cursor(Instant.parse("2025-03-01T12:00:00.123456Z"), UUID.randomUUID());
        assertThat(Cursor.decode(cursor.encode())).contains(cursor);
        assertThat(cursor.encode()).doesNotContain("=", "+", "/");
        assertThat(Cursor.decode("not a cursor")).isEmpty();
        assertThat(Cursor.decode("bm90IGEgY3Vyc29y")).isEmpty();
        // Instants Postgres cannot hold (or no row has) are no cursors: the query would fail.
        for (String at : List.of("+300000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "+10000-01-01T00:00:00Z")) {
            String crafted = java.util.Base64.getUrlEncoder().withoutPadding().encodeToString(
                    (at + "|00000000-0000-0000-0000-000000000000").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertThat(Cursor.decode(crafted)).as(at).isEmpty();
        }
    }

    private TaskFilter filter(Set<TaskStatus> statuses, String agent, Instant since) {
        return new TaskFilter("acme", statuses, Optional.ofNullable(agent), Optional.ofNullable(since), Optional.empty(),
                TaskQueries.MAX_LIMIT);
    }

    private List<UUID> ids(TaskFilter filter) {
        return queries.list(filter).rows().stream().map(TaskRow::id).toList();
    }

    private void setCreatedAt(UUID id, Instant at) {
        db.database().jdbi().useHandle(h -> h.createUpdate("UPDATE tasks SET created_at = :at WHERE id = :id")
                .bind("at", at.atOffset(ZoneOffset.UTC))
                .bind("id", id)
                .execute());
    }

    private List<UUID> newestFirst() {
        return db.database().jdbi().withHandle(h -> h.createQuery(
                        "SELECT id FROM tasks WHERE tenant = 'acme' ORDER BY created_at DESC, id DESC")
                .mapTo(UUID.class)
                .list());
    }
}
