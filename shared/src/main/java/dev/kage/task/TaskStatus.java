package dev.kage.task;

import java.util.Collection;
import java.util.EnumSet;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The state of a task, derived from its jobs' states by {@link #of(Collection)}, with the table of
 * allowed changes.
 */
public enum TaskStatus {
    /** No job has started. */
    QUEUED,
    /** At least one job started and not every job has ended. */
    RUNNING,
    /** Every job completed. */
    COMPLETED,
    /** Every job ended, some completed and some did not. */
    PARTIAL,
    /** Every job ended and none completed. */
    FAILED,
    /** Cancelled before every job ended. */
    CANCELLED;

    private static final Map<TaskStatus, Set<TaskStatus>> ALLOWED = Map.of(
            QUEUED, EnumSet.of(RUNNING, COMPLETED, PARTIAL, FAILED, CANCELLED),
            RUNNING, EnumSet.of(COMPLETED, PARTIAL, FAILED, CANCELLED),
            COMPLETED, EnumSet.noneOf(TaskStatus.class),
            PARTIAL, EnumSet.noneOf(TaskStatus.class),
            FAILED, EnumSet.noneOf(TaskStatus.class),
            CANCELLED, EnumSet.noneOf(TaskStatus.class));

    public boolean isFinal() {
        return ALLOWED.get(this).isEmpty();
    }

    public boolean canMoveTo(TaskStatus next) {
        return this == next || ALLOWED.get(this).contains(next);
    }

    /** The task state its jobs' states imply. */
    public static TaskStatus of(Collection<JobStatus> jobs) {
        if (jobs.isEmpty() || jobs.stream().allMatch(s -> s == JobStatus.QUEUED)) {
            return QUEUED;
        }
        if (!jobs.stream().allMatch(JobStatus::isFinal)) {
            return RUNNING;
        }
        if (jobs.contains(JobStatus.CANCELLED)) {
            return CANCELLED;
        }
        long completed = jobs.stream().filter(s -> s == JobStatus.COMPLETED).count();
        if (completed == jobs.size()) {
            return COMPLETED;
        }
        return completed == 0 ? FAILED : PARTIAL;
    }

    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Optional<TaskStatus> fromWireName(String name) {
        for (TaskStatus status : values()) {
            if (status.wireName().equals(name)) {
                return Optional.of(status);
            }
        }
        return Optional.empty();
    }
}
