package dev.kage.worker.worktree;

import java.nio.file.Path;

/**
 * A job's checkout. Immutable.
 *
 * @param cache   the worker's bare clone of the repository
 * @param path    the worktree's folder, where the agent runs
 * @param branch  {@code kage/<task>/<agent>}
 * @param baseSha the commit the branch started from
 * @param ready   whether it was taken from the ready pool (else made for the job with {@code git worktree add})
 */
public record Worktree(Path cache, Path path, String branch, String baseSha, boolean ready) {
}
