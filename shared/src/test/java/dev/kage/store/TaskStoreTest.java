package dev.kage.store;

import static dev.kage.store.StoreTestData.budgetViolation;
import static dev.kage.store.StoreTestData.result;
import static dev.kage.store.StoreTestData.task;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.task.JobStatus;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class TaskStoreTest {
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();

    @AfterEach
    void cleanUp() {
        db.close();
    }

    @Test
    void aTenantFindsOnlyItsOwnTasks() {
        TaskRecord task = task("acme", "demo");
        store.insert(task);
        assertThat(store.find("acme", task.id())).get().extracting(TaskRecord::description).isEqualTo("Quick test");
        assertThat(store.find("globex", task.id())).isEmpty();
        assertThat(store.find("acme", task.id()).get().assignments()).singleElement()
                .satisfies(a -> assertThat(a.timeoutSeconds()).isEqualTo(60));
    }

    @Test
    void theTaskEndsOnlyWhenEveryJobHasAnOutcome() {
        TaskRecord task = task("acme", "claude-code", "demo");
        store.insert(task);
        store.recordOutcomes(List.of(), List.of(task.id()));
        assertThat(store.recordOutcome(result(task, "demo", JobStatus.COMPLETED, "0.01"), List.of())).isEqualTo(TaskStatus.RUNNING);
        assertThat(store.recordOutcome(result(task, "claude-code", JobStatus.FAILED, "0.02"), List.of()))
                .isEqualTo(TaskStatus.PARTIAL);
        TaskRecord done = store.find("acme", task.id()).orElseThrow();
        assertThat(done.status()).isEqualTo(TaskStatus.PARTIAL);
        assertThat(done.completedAt()).isNotNull();
    }

    @Test
    void jobsFinishingAtTheSameMomentBothCountTowardsTheTasksStatus() throws Exception {
        for (int round = 0; round < 20; round++) {
            TaskRecord task = task("acme", "a", "b", "c", "d");
            store.insert(task);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            CountDownLatch start = new CountDownLatch(1);
            List<Future<TaskStatus>> statuses = List.of("a", "b", "c", "d").stream()
                    .map(agent -> pool.submit(() -> {
                        start.await();
                        return store.recordOutcome(result(task, agent, JobStatus.COMPLETED, "0.01"), List.of());
                    }))
                    .toList();
            start.countDown();
            long finals = 0;
            for (Future<TaskStatus> status : statuses) {
                if (status.get() == TaskStatus.COMPLETED) {
                    finals++;
                }
            }
            pool.shutdown();
            assertThat(finals).as("exactly one job sees the task complete").isEqualTo(1);
            assertThat(store.find("acme", task.id()).orElseThrow().status()).isEqualTo(TaskStatus.COMPLETED);
        }
    }

    @Test
    void aSecondOutcomeForTheSameJobIsIgnoredWithItsErrors() {
        TaskRecord task = task("acme", "demo");
        store.insert(task);
        store.recordOutcome(result(task, "demo", JobStatus.COMPLETED, "0.01"), List.of(budgetViolation(task, "demo")));
        store.recordOutcome(result(task, "demo", JobStatus.FAILED, "0.99"), List.of(budgetViolation(task, "demo")));
        assertThat(store.results(task.id())).singleElement().satisfies(r -> {
            assertThat(r.status()).isEqualTo(JobStatus.COMPLETED);
            assertThat(r.cost()).isEqualByComparingTo("0.01");
            assertThat(r.totalTokens()).isEqualTo(120);
        });
        assertThat(store.errors(task.id())).singleElement().satisfies(e -> {
            assertThat(e.errorType()).isEqualTo("BudgetExceededError");
            assertThat(e.detailsJson()).contains("\"token_limit\": 50000");
        });
    }
}
