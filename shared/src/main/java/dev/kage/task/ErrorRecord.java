package dev.kage.task;

import java.time.Instant;
import java.util.UUID;

/**
 * One row of {@code task_errors}. Immutable.
 *
 * @param errorType    e.g. {@code BudgetExceededError}, {@code TimeoutError}, {@code AgentError}
 * @param detailsJson  a JSON object with the error's context; never holds secrets
 * @param occurredAt   set by the database; {@code null} before insertion
 * @param errorKey     makes writing the row idempotent (e.g. {@code <job>#<attempt>#<type>}): a second row
 *                     with the same key is not written; {@code null} for rows that need no such guard
 */
public record ErrorRecord(
        UUID taskId,
        String jobId,
        String cliName,
        String errorType,
        String errorMessage,
        String detailsJson,
        boolean retryable,
        Instant occurredAt,
        String errorKey) {

    /** The message and details without NUL characters, which Postgres refuses ({@link dev.kage.store.PostgresText}). */
    public ErrorRecord {
        errorMessage = dev.kage.store.PostgresText.withoutNul(errorMessage);
        detailsJson = dev.kage.store.PostgresText.jsonWithoutNul(detailsJson);
    }
}
