package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** {@link JobControl}: what a stop does to a running job and to one whose agent is done. */
class JobControlTest {

    @Test
    void aShutdownStopsARunningJobButLeavesAFinishingOneToRecordItsOutcome() {
        AtomicInteger slots = new AtomicInteger(1);
        JobControl running = new JobControl();
        running.bind(Thread.currentThread());
        running.holdSlot(slots::decrementAndGet);
        running.stop(JobControl.StopReason.SHUTDOWN);
        assertThat(running.reason()).isEqualTo(JobControl.StopReason.SHUTDOWN);
        assertThat(Thread.interrupted()).as("the running job's thread is interrupted").isTrue();

        JobControl finishing = new JobControl();
        finishing.bind(Thread.currentThread());
        finishing.holdSlot(slots::decrementAndGet);
        finishing.agentDone();
        assertThat(finishing.finishing()).isTrue();
        // Interrupted, its outcome's write would look failed and the job be handed back: run again though recorded.
        finishing.stop(JobControl.StopReason.SHUTDOWN);
        assertThat(finishing.reason()).isNull();
        assertThat(Thread.interrupted()).as("a finishing job's thread is left alone").isFalse();
        // A reclaim by another worker still stops it.
        finishing.stop(JobControl.StopReason.LOST);
        assertThat(finishing.reason()).isEqualTo(JobControl.StopReason.LOST);
        assertThat(Thread.interrupted()).isTrue();
        assertThat(slots.get()).as("the finishing job gave its slot back").isZero();
    }

    @Test
    void aShutdownLeavesAJobWhoseAgentExitedToSettlePushAndRecord() {
        // Between the agent's exit and finish(): settling its usage, committing and pushing its branch. Handed back
        // then, a finished and paid-for run would run again elsewhere.
        JobControl exited = new JobControl();
        exited.bind(Thread.currentThread());
        exited.holdSlot(() -> { });
        exited.agentExited();
        exited.stop(JobControl.StopReason.SHUTDOWN);
        assertThat(exited.reason()).isNull();
        assertThat(Thread.interrupted()).isFalse();
        exited.stop(JobControl.StopReason.LOST);
        assertThat(exited.reason()).as("another worker's reclaim still stops it").isEqualTo(JobControl.StopReason.LOST);
        assertThat(Thread.interrupted()).isTrue();
    }
}
