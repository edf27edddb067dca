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
    /** Gives back the start lane the job was claimed with; null when it holds none (any more). */
    private final java.util.concurrent.atomic.AtomicReference<Runnable> startLane = new java.util.concurrent.atomic.AtomicReference<>();

    /**
     * Gives back the job's slot once its agent is done; null when it holds none (any more). Set by the runtime; a
     * job whose agent is done is <em>finishing</em>: only its bookkeeping is left (outcome row, acknowledgement).
     */
    private final java.util.concurrent.atomic.AtomicReference<Runnable> slot = new java.util.concurrent.atomic.AtomicReference<>();
    private volatile boolean finishing;
    private volatile boolean exited;
    private volatile boolean outcomeChecked;
    private volatile dev.kage.tokens.Usage charged;
    private final java.util.concurrent.atomic.AtomicBoolean lostNoted = new java.util.concurrent.atomic.AtomicBoolean();

    /** When ({@link System#nanoTime}) the job may start; meaningful only while {@link #held} is set. */
    private volatile long holdUntil;
    private volatile boolean held;

    /**
     * The job must not start before {@code nanos} ({@link System#nanoTime}): it came from a Redis that restarted moments
     * ago, and an earlier delivery of it may still run elsewhere ({@code WorkerRuntime}'s restart hold). Set by the
     * runtime before the job is started.
     */
    void holdUntil(long nanos) {
        holdUntil = nanos;
        held = true;
    }

    /** How long the job must still wait before it starts, in ns; 0 when it need not (any more). */
    public long holdRemainingNanos() {
        return held ? Math.max(0, holdUntil - System.nanoTime()) : 0;
    }

    /** The job holds a slot; {@code release} gives it back. */
    void holdSlot(Runnable release) {
        slot.set(release);
    }

    /**
     * The job's agent is done (or never started): what is left is recording its outcome and acknowledging its entry,
     * which needs no slot. Gives back the slot and the start lane, so another job can start while this one waits for
     * its group commit. Called by the job's own thread; idempotent.
     */
    public void agentDone() {
        leaveStartLane();
        Runnable release = slot.getAndSet(null);
        if (release != null) {
            // Finishing before the slot is given back: a shutdown that sees the slot free must see this too.
            synchronized (this) {
                finishing = true;
            }
            release.run();
        }
    }

    /** True once {@link #agentDone()} gave the slot back: the job only records its outcome now, nothing to stop. */
    public boolean finishing() {
        return finishing;
    }

    /** The job was claimed holding a start lane; {@code release} gives it back. */
    void holdStartLane(Runnable release) {
        startLane.set(release);
    }

    /**
     * The job's start is over — its agent process exists, or it waits for something that needs no CPU (a permit) —
     * so another job may be claimed to start. Idempotent; the runtime calls it again when the job ends.
     */
    public void leaveStartLane() {
        Runnable release = startLane.getAndSet(null);
        if (release != null) {
            release.run();
        }
    }

    /**
     * Called by the job's own thread when it starts. A job stopped before (while it waited for its room, say) is not
     * interrupted here: {@code JobRunner} checks {@link #reason()} before it does anything.
     */
    synchronized void bind(Thread current) {
        this.thread = current;
    }

    /** The outcome check of a job delivered again is done (or was not needed): handing it back is safe from here on. */
    public void outcomeChecked() {
        outcomeChecked = true;
    }

    /**
     * False while a job delivered again has not yet learnt whether an earlier delivery finished its attempt: a
     * shutdown must not hand it back then (a new entry skips the check), but leave it pending for a reclaim.
     */
    public boolean isOutcomeChecked() {
        return outcomeChecked;
    }

    /**
     * The job's agent has exited (its process, or its HTTP call, returned): what is left is settling, committing,
     * pushing and recording. No stop applies from here on ({@link #stop}). Called by the job's own thread.
     */
    public synchronized void agentExited() {
        exited = true;
        // A stop that came after the agent's exit and before this mark (its interrupt is cleared by the caller) is
        // forgotten too: the run is recorded as it ended, also if something fails later.
        reason = null;
    }

    /** Its entry was found no longer this worker's after its agent exited; true the first time only (to log it once). */
    public boolean noteLost() {
        return lostNoted.compareAndSet(false, true);
    }

    /** True once the job's agent has exited ({@link #agentExited}) or it is {@linkplain #finishing() finishing}: no stop applies. */
    public boolean unstoppable() {
        return exited || finishing;
    }

    /**
     * Asks the job to stop; the first reason given wins. Nothing stops a job whose agent exited: there is no process
     * left to kill, and interrupting what is left (settling, committing, pushing, recording its outcome) would only
     * throw a finished, paid-for run away — a shutdown would hand it back and a lost lease leave it pending, so it ran
     * again; a cancel would record it as cancelled and free, over its real outcome. Its task stays cancelled; another
     * worker that reclaimed its entry finds its outcome and does not run it again.
     */
    public synchronized void stop(StopReason why) {
        if (finishing || exited) {
            return;
        }
        if (reason == null) {
            reason = why;
            Thread t = thread;
            if (t != null) {
                t.interrupt();
            }
        }
    }

    /**
     * What the stopped run was charged to the budgets (the prompt and the output counted until it was killed), for the
     * row that records it; called by the job's own thread before it rethrows the stop.
     */
    public void charged(dev.kage.tokens.Usage usage) {
        this.charged = usage;
    }

    /** What {@link #charged} recorded; null when the run was charged nothing. */
    public dev.kage.tokens.Usage charged() {
        return charged;
    }

    public StopReason reason() {
        return reason;
    }
}
