package dev.kage.task;

import java.util.Locale;
import java.util.Optional;

/** A task's priority; each has its own stream per agent. Workers read {@link #HIGH} first. */
public enum Priority {
    HIGH, NORMAL, LOW;

    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Optional<Priority> fromWireName(String name) {
        for (Priority priority : values()) {
            if (priority.wireName().equals(name)) {
                return Optional.of(priority);
            }
        }
        return Optional.empty();
    }
}
