package dev.kage.worker.process;

/**
 * Sees an agent's standard output as it arrives, chunk by chunk (one read of the pipe, at most 8 KiB), on the
 * thread that drains it, every chunk until the pipe closes. Returning false stops the run: the process tree is killed as on a timeout, and
 * {@link ProcessOutcome#stopped()} says so. Called from one thread at a time.
 */
@FunctionalInterface
public interface OutputWatcher {
    /** Watches nothing. */
    OutputWatcher NONE = (chunk, length) -> true;

    /**
     * @param chunk  bytes read; valid up to {@code length} during the call only
     * @return true to let the agent go on
     */
    boolean onOutput(byte[] chunk, int length);
}
