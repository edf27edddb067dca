package dev.kage.worker.worktree;

import dev.kage.KageException;

/** A git command failed; the message holds the command and git's own words. */
public class GitException extends KageException {
    public GitException(String message, boolean retryable) {
        super(message, retryable);
    }
}
