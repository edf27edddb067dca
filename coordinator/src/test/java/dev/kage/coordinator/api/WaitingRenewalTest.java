package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.coordinator.task.TaskService;
import dev.kage.queue.JobQueue;
import dev.kage.redis.KageKeys;
import dev.kage.store.Database;
import dev.kage.task.JobMessage;
import dev.kage.task.LiveTaskState;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A job that waits days for a worker (an agent nobody serves yet) keeps its enqueue-once marker and its task's live
 * state: a marker that expired made the reconciler add the job again after a restart, and both entries ran.
 */
class WaitingRenewalTest {
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123");
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @Test
    void theMarkersAndLiveStateOfTasksWaitingOverADayAreRenewedAndNoOthers() throws Exception {
        String old = coordinator.submit("acme-key-123", "{\"description\": \"waits\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        String young = coordinator.submit("acme-key-123", "{\"description\": \"new\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        Database db = coordinator.context().getBean(Database.class);
        db.jdbi().useHandle(h -> {
            h.execute("UPDATE tasks SET created_at = now() - interval '6 days 23 hours', enqueued_at = now() WHERE id = ?::uuid", old);
            h.execute("UPDATE tasks SET enqueued_at = now() WHERE id = ?::uuid", young);
        });
        KageKeys keys = coordinator.context().getBean(KageKeys.class);
        var redis = coordinator.redis().redis();
        // Six days and 23 hours later: a minute left of each key's lifetime.
        for (String task : java.util.List.of(old, young)) {
            redis.pexpire(keys.enqueued("demo", JobMessage.jobId(task, "demo"), 1), 60_000);
            redis.pexpire(keys.task("acme", task), 60_000);
        }

        int renewed = coordinator.context().getBean(TaskService.class).renewWaiting();

        assertThat(renewed).isEqualTo(2);
        assertThat(redis.pttl(keys.enqueued("demo", JobMessage.jobId(old, "demo"), 1)))
                .isGreaterThan(JobQueue.ENQUEUE_MARKER_TTL.minus(Duration.ofMinutes(1)).toMillis());
        assertThat(redis.pttl(keys.task("acme", old))).isGreaterThan(LiveTaskState.TTL.minus(Duration.ofMinutes(1)).toMillis());
        assertThat(redis.pttl(keys.enqueued("demo", JobMessage.jobId(young, "demo"), 1))).as("a young task's").isLessThanOrEqualTo(60_000);
        // A key already gone is not brought back: a missing marker is the reconciler's sign that Redis lost the job.
        redis.del(keys.enqueued("demo", JobMessage.jobId(old, "demo"), 1));
        coordinator.context().getBean(TaskService.class).renewWaiting();
        assertThat(redis.exists(keys.enqueued("demo", JobMessage.jobId(old, "demo"), 1))).isZero();
    }
}
