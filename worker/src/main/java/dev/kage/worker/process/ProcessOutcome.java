package dev.kage.worker.process;

import java.time.Duration;

/**
 * How an agent process ended. Immutable.
 *
 * @param exitCode the exit code; meaningless when {@link #timedOut()} or {@link #killed()}
 * @param timedOut the timeout passed and the process tree was killed
 * @param killed   the run was stopped from outside (shutdown, cancel) and the process tree was killed
 * @param stopped  its {@link OutputWatcher} stopped it (a spent budget) and the process tree was killed
 * @param stdout   captured standard output (head and tail when it was long)
 * @param stdoutTail the last part of standard output, where a final JSON result sits
 * @param stderr   captured standard error (head and tail when it was long)
 * @param stdoutBytes bytes written to standard output in all
 * @param duration wall time from start to exit
 */
public record ProcessOutcome(int exitCode, boolean timedOut, boolean killed, boolean stopped, String stdout, String stdoutTail, String stderr,
                             long stdoutBytes, Duration duration) {

    public boolean succeeded() {
        return !timedOut && !killed && !stopped && exitCode == 0;
    }
}
