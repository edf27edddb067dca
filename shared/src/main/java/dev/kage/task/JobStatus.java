package dev.kage.task;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The state of one job (one agent assignment of a task), with the one table of allowed changes.
 *
 * <pre>
 * QUEUED ──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
 *   │           └──▶ QUEUED   (handed back: retry, shutdown, reclaim)
 *   └──▶ CANCELLED | FAILED
 * </pre>
 */
public enum JobStatus {
    QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED;

    private static final Map<JobStatus, Set<JobStatus>> ALLOWED = Map.of(
            QUEUED, EnumSet.of(RUNNING, CANCELLED, FAILED),
            RUNNING, EnumSet.of(COMPLETED, FAILED, CANCELLED, QUEUED),
            COMPLETED, EnumSet.noneOf(JobStatus.class),
            FAILED, EnumSet.noneOf(JobStatus.class),
            CANCELLED, EnumSet.noneOf(JobStatus.class));

    public boolean isFinal() {
        return ALLOWED.get(this).isEmpty();
    }

    public boolean canMoveTo(JobStatus next) {
        return ALLOWED.get(this).contains(next);
    }

    /**
     * @throws IllegalStateChangeException naming both states when the change is not allowed
     */
    public JobStatus moveTo(JobStatus next) {
        if (!canMoveTo(next)) {
            throw new IllegalStateChangeException(this, next);
        }
        return next;
    }

    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Optional<JobStatus> fromWireName(String name) {
        for (JobStatus status : values()) {
            if (status.wireName().equals(name)) {
                return Optional.of(status);
            }
        }
        return Optional.empty();
    }
}
