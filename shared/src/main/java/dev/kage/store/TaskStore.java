package dev.kage.store;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobStatus;
import dev.kage.task.Priority;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import org.jdbi.v3.core.Handle;
import org.jdbi.v3.core.JdbiException;

/**
 * Tasks, results and errors in Postgres. Rows are appended; a task's status changes only inside a
 * transaction that holds the task's row lock, so workers finishing jobs of one task at the same
 * moment cannot overwrite each other's outcome. Thread-safe.
 */
public final class TaskStore {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final TypeReference<List<Map<String, Object>>> ASSIGNMENTS = new TypeReference<>() {
    };

    private final Database database;

    public TaskStore(Database database) {
        this.database = database;
    }

    public void insert(TaskRecord task) {
        run(handle -> handle.createUpdate("""
                        INSERT INTO tasks (id, tenant, description, status, priority, repo, base_branch,
                                           cli_assignments, metadata, token_limit)
                        VALUES (:id, :tenant, :description, :status, :priority, :repo, :baseBranch,
                                CAST(:assignments AS jsonb), CAST(:metadata AS jsonb), :tokenLimit)
                        """)
                .bind("id", task.id())
                .bind("tenant", task.tenant())
                .bind("description", task.description())
                .bind("status", task.status().wireName())
                .bind("priority", task.priority().wireName())
                .bind("repo", task.repo())
                .bind("baseBranch", task.baseBranch())
                .bind("assignments", assignmentsJson(task.assignments()))
                .bind("metadata", task.metadataJson())
                .bind("tokenLimit", task.tokenLimit())
                .execute());
    }

    /** The tenant's task; another tenant's id finds nothing. */
    public Optional<TaskRecord> find(String tenant, UUID id) {
        return call(handle -> handle.createQuery("SELECT * FROM tasks WHERE id = :id AND tenant = :tenant")
                .bind("id", id)
                .bind("tenant", tenant)
                .map((rs, ctx) -> taskRow(rs))
                .findOne());
    }

    public List<ResultRecord> results(UUID taskId) {
        return call(handle -> handle.createQuery("SELECT * FROM execution_results WHERE task_id = :id ORDER BY id")
                .bind("id", taskId)
                .map((rs, ctx) -> resultRow(rs))
                .list());
    }

    public List<ErrorRecord> errors(UUID taskId) {
        return call(handle -> handle.createQuery("SELECT * FROM task_errors WHERE task_id = :id ORDER BY id")
                .bind("id", taskId)
                .map((rs, ctx) -> errorRow(rs))
                .list());
    }

    /** Moves a queued task to running when its first job starts; later calls change nothing. */
    public void markRunning(UUID taskId) {
        run(handle -> handle.createUpdate("""
                        UPDATE tasks SET status = 'running', updated_at = now()
                        WHERE id = :id AND status = 'queued'
                        """)
                .bind("id", taskId)
                .execute());
    }

    /** Sets the status outright, e.g. {@code failed} when a task could not be enqueued. */
    public void setStatus(UUID taskId, TaskStatus status) {
        run(handle -> handle.createUpdate("""
                        UPDATE tasks SET status = :status, updated_at = now(),
                                         completed_at = CASE WHEN :final THEN now() ELSE completed_at END
                        WHERE id = :id
                        """)
                .bind("id", taskId)
                .bind("status", status.wireName())
                .bind("final", status.isFinal())
                .execute());
    }

    /**
     * Records a finished job and the task's resulting status in one transaction. A result for a job
     * that already has one is ignored (a job re-delivered after its result was written), and so are
     * its errors.
     *
     * @return the task's status after this outcome
     */
    public TaskStatus recordOutcome(ResultRecord result, List<ErrorRecord> errors) {
        return call(handle -> handle.inTransaction(tx -> {
            List<Map<String, Object>> assignments = parseAssignments(tx.createQuery(
                            "SELECT cli_assignments::text FROM tasks WHERE id = :id FOR UPDATE")
                    .bind("id", result.taskId())
                    .mapTo(String.class)
                    .one());
            int inserted = tx.createUpdate("""
                            INSERT INTO execution_results (task_id, job_id, cli_name, status, output_summary, tokens_in,
                                tokens_out, cache_read_tokens, cache_write_tokens, total_tokens, cost, usage_source, model,
                                duration_ms, exit_code, branch, commit_sha, diff_stat, worker_id, attempt)
                            VALUES (:taskId, :jobId, :cliName, :status, :outputSummary, :tokensIn, :tokensOut,
                                :cacheReadTokens, :cacheWriteTokens, :totalTokens, :cost, :usageSource, :model, :durationMs,
                                :exitCode, :branch, :commitSha, :diffStat, :workerId, :attempt)
                            ON CONFLICT (job_id) DO NOTHING
                            """)
                    .bindMethods(result)
                    .bind("status", result.status().wireName())
                    .execute();
            if (inserted == 1) {
                for (ErrorRecord error : errors) {
                    insertError(tx, error);
                }
            }
            List<JobStatus> statuses = new ArrayList<>(tx.createQuery("SELECT status FROM execution_results WHERE task_id = :id")
                    .bind("id", result.taskId())
                    .mapTo(String.class)
                    .map(s -> JobStatus.fromWireName(s).orElse(JobStatus.FAILED))
                    .list());
            while (statuses.size() < assignments.size()) {
                statuses.add(JobStatus.RUNNING);
            }
            TaskStatus status = TaskStatus.of(statuses);
            tx.createUpdate("""
                            UPDATE tasks SET status = :status, updated_at = now(),
                                             completed_at = CASE WHEN :final THEN now() ELSE NULL END
                            WHERE id = :id
                            """)
                    .bind("id", result.taskId())
                    .bind("status", status.wireName())
                    .bind("final", status.isFinal())
                    .execute();
            return status;
        }));
    }

    /** Appends one error row outside any job outcome (an enqueue failure, a budget warning). */
    public void insertError(ErrorRecord error) {
        run(handle -> insertError(handle, error));
    }

    private static int insertError(Handle handle, ErrorRecord error) {
        return handle.createUpdate("""
                        INSERT INTO task_errors (task_id, job_id, cli_name, error_type, error_message, error_details, retryable)
                        VALUES (:taskId, :jobId, :cliName, :errorType, :errorMessage, CAST(:detailsJson AS jsonb), :retryable)
                        """)
                .bindMethods(error)
                .bind("detailsJson", error.detailsJson() == null ? "{}" : error.detailsJson())
                .execute();
    }

    private static TaskRecord taskRow(ResultSet rs) throws SQLException {
        List<Assignment> assignments = parseAssignments(rs.getString("cli_assignments")).stream()
                .map(a -> new Assignment(String.valueOf(a.get("cli_name")), ((Number) a.get("timeout")).intValue()))
                .toList();
        return new TaskRecord(
                rs.getObject("id", UUID.class),
                rs.getString("tenant"),
                rs.getString("description"),
                TaskStatus.fromWireName(rs.getString("status")).orElseThrow(),
                Priority.fromWireName(rs.getString("priority")).orElseThrow(),
                rs.getString("repo"),
                rs.getString("base_branch"),
                assignments,
                rs.getString("metadata"),
                rs.getLong("token_limit"),
                instant(rs, "created_at"),
                instant(rs, "updated_at"),
                instant(rs, "completed_at"));
    }

    private static ResultRecord resultRow(ResultSet rs) throws SQLException {
        Object exit = rs.getObject("exit_code");
        return new ResultRecord(
                rs.getObject("task_id", UUID.class),
                rs.getString("job_id"),
                rs.getString("cli_name"),
                JobStatus.fromWireName(rs.getString("status")).orElse(JobStatus.FAILED),
                rs.getString("output_summary"),
                rs.getLong("tokens_in"),
                rs.getLong("tokens_out"),
                rs.getLong("cache_read_tokens"),
                rs.getLong("cache_write_tokens"),
                rs.getBigDecimal("cost"),
                rs.getString("usage_source"),
                rs.getString("model"),
                rs.getLong("duration_ms"),
                exit == null ? null : ((Number) exit).intValue(),
                rs.getString("branch"),
                rs.getString("commit_sha"),
                rs.getString("diff_stat"),
                rs.getString("worker_id"),
                rs.getInt("attempt"),
                instant(rs, "created_at"));
    }

    private static ErrorRecord errorRow(ResultSet rs) throws SQLException {
        return new ErrorRecord(
                rs.getObject("task_id", UUID.class),
                rs.getString("job_id"),
                rs.getString("cli_name"),
                rs.getString("error_type"),
                rs.getString("error_message"),
                rs.getString("error_details"),
                rs.getBoolean("retryable"),
                instant(rs, "occurred_at"));
    }

    private static Instant instant(ResultSet rs, String column) throws SQLException {
        Timestamp ts = rs.getTimestamp(column);
        return ts == null ? null : ts.toInstant();
    }

    static String assignmentsJson(List<Assignment> assignments) {
        List<Map<String, Object>> wire = assignments.stream()
                .map(a -> Map.<String, Object>of("cli_name", a.cliName(), "timeout", a.timeoutSeconds()))
                .toList();
        try {
            return JSON.writeValueAsString(wire);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static List<Map<String, Object>> parseAssignments(String json) {
        try {
            return JSON.readValue(json, ASSIGNMENTS);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cli_assignments column is not a JSON array: " + e.getOriginalMessage(), e);
        }
    }

    private void run(java.util.function.Consumer<Handle> work) {
        call(handle -> {
            work.accept(handle);
            return null;
        });
    }

    private <T> T call(java.util.function.Function<Handle, T> work) {
        try {
            return database.jdbi().withHandle(work::apply);
        } catch (JdbiException e) {
            throw new StoreException("Postgres: " + e.getMessage(), e);
        }
    }
}
