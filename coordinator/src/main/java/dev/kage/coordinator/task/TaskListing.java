package dev.kage.coordinator.task;

import dev.kage.coordinator.api.ErrorBody;
import dev.kage.agent.AgentCatalog;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.store.TaskQueries;
import dev.kage.store.TaskQueries.Cursor;
import dev.kage.store.TaskQueries.TaskFilter;
import dev.kage.task.TaskStatus;
import io.micronaut.http.HttpParameters;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * {@code GET /api/v1/tasks}: reads the query parameters {@code status}, {@code agent}, {@code since},
 * {@code limit} and {@code cursor}, and lists the tenant's tasks. Every bad parameter is reported at once,
 * each named as the field of a 400. Thread-safe.
 */
public final class TaskListing {
    private static final List<String> STATUS_NAMES = Arrays.stream(TaskStatus.values()).map(TaskStatus::wireName).toList();

    private final TaskQueries queries;
    private final AgentCatalog catalog;

    public TaskListing(TaskQueries queries, AgentCatalog catalog) {
        this.queries = queries;
        this.catalog = catalog;
    }

    /**
     * @throws InvalidRequestException naming each bad query parameter
     */
    public TaskListView list(String tenant, HttpParameters parameters) {
        TaskQueries.Page page = queries.list(filter(tenant, parameters));
        List<TaskListView.Summary> tasks = page.rows().stream()
                .map(r -> new TaskListView.Summary(r.id().toString(), r.status().wireName(), r.description(),
                        r.priority().wireName(), r.agents(), r.createdAt(), r.updatedAt(), r.completedAt()))
                .toList();
        return new TaskListView(tasks, page.next().map(Cursor::encode).orElse(null));
    }

    TaskFilter filter(String tenant, HttpParameters parameters) {
        List<FieldError> errors = new ArrayList<>();
        // Parameters it does not read are refused before it runs (QueryParameterFilter): a typo would list every task.
        Set<TaskStatus> statuses = EnumSet.noneOf(TaskStatus.class);
        for (String value : parameters.getAll("status")) {
            for (String name : value.split(",", -1)) {
                Optional<TaskStatus> status = TaskStatus.fromWireName(name.trim());
                if (status.isPresent()) {
                    statuses.add(status.get());
                } else {
                    errors.add(new FieldError("status", "'" + ErrorBody.printable(name) + "' is not a status; use one or more of "
                            + String.join(", ", STATUS_NAMES) + ", comma-separated"));
                }
            }
        }

        Optional<String> agent = single(parameters, "agent", errors);
        if (agent.isPresent() && catalog.find(agent.get()).isEmpty()) {
            errors.add(new FieldError("agent", "unknown agent '" + ErrorBody.printable(agent.get()) + "'; configured agents: "
                    + catalog.names()));
        }

        Optional<Instant> since = single(parameters, "since", errors).flatMap(text -> {
            Optional<Instant> at = instant(text);
            if (at.isEmpty()) {
                errors.add(new FieldError("since", "'" + ErrorBody.printable(text)
                        + "' is not an ISO-8601 instant, e.g. 2025-01-31T12:00:00Z"));
            } else if (at.get().isBefore(TaskQueries.EARLIEST_INSTANT) || at.get().isAfter(TaskQueries.LATEST_INSTANT)) {
                // Postgres's timestamptz ends in the year 294276: a later instant failed the query (a false 503)
                errors.add(new FieldError("since", "'" + ErrorBody.printable(text) + "' is outside the years 0001 to 9999"));
                return Optional.empty();
            }
            return at;
        });

        int limit = TaskQueries.DEFAULT_LIMIT;
        Optional<String> limitText = single(parameters, "limit", errors);
        if (limitText.isPresent()) {
            try {
                limit = Integer.parseInt(limitText.get().trim());
            } catch (NumberFormatException e) {
                limit = -1;
            }
            if (limit < 1 || limit > TaskQueries.MAX_LIMIT) {
                errors.add(new FieldError("limit", "'" + ErrorBody.printable(limitText.get()) + "' is not a whole number from 1 to "
                        + TaskQueries.MAX_LIMIT + " (default " + TaskQueries.DEFAULT_LIMIT + ")"));
            }
        }

        Optional<Cursor> after = single(parameters, "cursor", errors).flatMap(text -> {
            Optional<Cursor> cursor = Cursor.decode(text.trim());
            if (cursor.isEmpty()) {
                errors.add(new FieldError("cursor", "not a cursor this API handed out; pass next_cursor of the previous page"));
            }
            return cursor;
        });

        if (!errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
        return new TaskFilter(tenant, statuses, agent, since, after, limit);
    }

    /** The parameter's one value; a repeated parameter is an error, an absent one is empty. */
    private static Optional<String> single(HttpParameters parameters, String name, List<FieldError> errors) {
        List<String> values = parameters.getAll(name);
        if (values.isEmpty()) {
            return Optional.empty();
        }
        if (values.size() > 1) {
            errors.add(new FieldError(name, "given " + values.size() + " times; give it once"));
            return Optional.empty();
        }
        if (values.get(0).isBlank()) {
            errors.add(new FieldError(name, "is empty; leave it out or give a value"));
            return Optional.empty();
        }
        return Optional.of(values.get(0));
    }

    private static Optional<Instant> instant(String text) {
        String trimmed = text.trim();
        try {
            return Optional.of(Instant.parse(trimmed));
        } catch (DateTimeParseException notAnInstant) {
            try {
                return Optional.of(OffsetDateTime.parse(trimmed).toInstant());
            } catch (DateTimeParseException notAnOffsetTime) {
                return Optional.empty();
            }
        }
    }

}
