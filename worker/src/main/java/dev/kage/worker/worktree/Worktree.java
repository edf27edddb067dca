package dev.kage.worker.worktree;

import java.nio.file.Path;

/**
 * A job's checkout. Immutable.
 *
 * @param cache   the worker's bare clone of the repository
 * @param path    the worktree's folder, where the agent runs
 * @param branch  {@code kage/<task>/<agent>}
 * @param baseSha the commit the branch started from
 */
public record Worktree(Path cache, Path path, String branch, String baseSha) {
}
