package dev.kage.worker.run;

/**
 * What the runtime tells a running job from outside: why it must stop. The runtime sets the reason,
 * then interrupts the job's thread; the job reads the reason to decide what becomes of its entry.
 * Thread-safe.
 */
public final class JobControl {
    /** Why a job was stopped before it ended by itself. */
    public enum StopReason {
        /** The task was cancelled: record the job as cancelled and acknowledge it. */
        CANCELLED,
        /** The worker is shutting down: hand the job back for another worker at once. */
        SHUTDOWN,
        /** Another worker reclaimed the entry: touch nothing, it is theirs now. */
        LOST
    }

    private volatile StopReason reason;
    private volatile Thread thread;

    /** Called by the job's own thread when it starts. */
    void bind(Thread current) {
        this.thread = current;
    }

    /** Asks the job to stop; the first reason given wins. */
    public synchronized void stop(StopReason why) {
        if (reason == null) {
            reason = why;
            Thread t = thread;
            if (t != null) {
                t.interrupt();
            }
        }
    }

    public StopReason reason() {
        return reason;
    }
}
