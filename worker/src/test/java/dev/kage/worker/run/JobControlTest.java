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
        // Nor do a reclaim or a cancel: there is no agent left to stop, and its outcome (first written wins) is what a
        // reclaiming worker finds.
        finishing.stop(JobControl.StopReason.LOST);
        finishing.stop(JobControl.StopReason.CANCELLED);
        assertThat(finishing.reason()).isNull();
        assertThat(Thread.interrupted()).isFalse();
        assertThat(slots.get()).as("the finishing job gave its slot back").isZero();
    }

    @Test
    void noStopInterruptsAJobWhoseAgentExitedWhileItSettlesPushesAndRecords() {
        // Between the agent's exit and finish(): settling its usage, committing and pushing its branch. Handed back
        // (shutdown) or left pending (a lost lease), a finished and paid-for run would run again elsewhere; cancelled,
        // its row would say cancelled and free over its real outcome.
        for (JobControl.StopReason reason : JobControl.StopReason.values()) {
            JobControl exited = new JobControl();
            exited.bind(Thread.currentThread());
            exited.holdSlot(() -> { });
            assertThat(exited.unstoppable()).isFalse();
            exited.agentExited();
            assertThat(exited.unstoppable()).isTrue();
            exited.stop(reason);
            assertThat(exited.reason()).as(reason.name()).isNull();
            assertThat(Thread.interrupted()).as(reason.name()).isFalse();
        }
    }

    @Test
    void aStopThatCameBetweenTheAgentsExitAndItsMarkIsForgotten() {
        // The process ended by itself; a cancel landed before the runner marked the exit. The run is recorded as it ended.
        JobControl control = new JobControl();
        control.bind(Thread.currentThread());
        control.holdSlot(() -> { });
        control.stop(JobControl.StopReason.CANCELLED);
        assertThat(control.reason()).isEqualTo(JobControl.StopReason.CANCELLED);
        control.agentExited();
        assertThat(Thread.interrupted()).as("the interrupt the runner clears").isTrue();
        assertThat(control.reason()).isNull();
        assertThat(control.unstoppable()).isTrue();
    }
}
