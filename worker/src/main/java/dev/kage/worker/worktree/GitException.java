package dev.kage.worker.worktree;

import dev.kage.task.UrlCredentials;
import dev.kage.KageException;

/**
 * A git command failed; the message holds the command and git's own words, with any URL's credentials masked
 * ({@link UrlCredentials}), so that no row or log line built from it carries an operator's token.
 */
public class GitException extends KageException {
    public GitException(String message, boolean retryable) {
        super(UrlCredentials.mask(message), retryable);
    }
}
