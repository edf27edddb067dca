package dev.kage.task;

import dev.kage.KageException;

/** A job or task was asked to move between two states that its transition table does not allow. */
public class IllegalStateChangeException extends KageException {
    public IllegalStateChangeException(Enum<?> from, Enum<?> to) {
        super("illegal state change from " + from + " to " + to, false);
    }
}
