package dev.kage.store;

import static dev.kage.store.StoreTestData.budgetViolation;
import static dev.kage.store.StoreTestData.result;
import static dev.kage.store.StoreTestData.task;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.store.TaskStore.Outcome;
import dev.kage.task.JobStatus;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import dev.kage.testing.DatabaseFixture;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@link TaskStore#recordOutcomes}: many outcomes in one transaction, with the same rules as one at a time. */
class GroupCommitTest {
    private final DatabaseFixture db = new DatabaseFixture();
    private final TaskStore store = db.store();

    @AfterEach
    void cleanUp() {
        db.close();
    }

    @Test
    void aBatchRecordsEveryOutcomeAndEachTasksStatus() {
        TaskRecord two = task("acme", "a", "b");
        TaskRecord one = task("acme", "a");
        TaskRecord idle = task("acme", "a");
        List.of(two, one, idle).forEach(store::insert);

        Map<UUID, TaskStatus> after = store.recordOutcomes(List.of(
                new Outcome(result(two, "a", JobStatus.COMPLETED, "0.01"), List.of()),
                new Outcome(result(one, "a", JobStatus.FAILED, "0.01"), List.of(budgetViolation(one, "a")))), Set.of(idle.id()));

        assertThat(after).containsEntry(two.id(), TaskStatus.RUNNING).containsEntry(one.id(), TaskStatus.FAILED)
                .containsEntry(idle.id(), TaskStatus.RUNNING);
        assertThat(store.find("acme", idle.id()).orElseThrow().status()).as("a started mark moves a queued task to running")
                .isEqualTo(TaskStatus.RUNNING);
        assertThat(store.errors(one.id())).singleElement().extracting(e -> e.errorType()).isEqualTo("BudgetExceededError");

        store.recordOutcomes(List.of(new Outcome(result(two, "b", JobStatus.COMPLETED, "0.01"), List.of()),
                new Outcome(result(two, "b", JobStatus.FAILED, "0.99"), List.of())), Set.of());
        assertThat(store.find("acme", two.id()).orElseThrow().status()).isEqualTo(TaskStatus.COMPLETED);
        assertThat(store.results(two.id())).hasSize(2).allSatisfy(r -> assertThat(r.status()).isEqualTo(JobStatus.COMPLETED));
    }

    @Test
    void aCancelledTaskStaysCancelled() {
        TaskRecord task = task("acme", "a");
        store.insert(task);
        store.cancel("acme", task.id());
        Map<UUID, TaskStatus> after = store.recordOutcomes(
                List.of(new Outcome(result(task, "a", JobStatus.COMPLETED, "0.01"), List.of())), Set.of(task.id()));
        assertThat(after).containsEntry(task.id(), TaskStatus.CANCELLED);
    }

    @Test
    void overlappingBatchesFromManyWritersNeitherDeadlockNorLoseAnOutcome() throws Exception {
        List<TaskRecord> tasks = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            TaskRecord t = task("acme", "a", "b", "c", "d");
            store.insert(t);
            tasks.add(t);
        }
        List<Outcome> all = new ArrayList<>();
        for (TaskRecord t : tasks) {
            for (String agent : List.of("a", "b", "c", "d")) {
                all.add(new Outcome(result(t, agent, JobStatus.COMPLETED, "0.01"), List.of()));
            }
        }
        Collections.shuffle(all, new java.util.Random(7));
        int writers = 4;
        ExecutorService pool = Executors.newFixedThreadPool(writers);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<?>> done = new ArrayList<>();
        for (int w = 0; w < writers; w++) {
            List<Outcome> mine = all.subList(w * all.size() / writers, (w + 1) * all.size() / writers);
            done.add(pool.submit(() -> {
                start.await();
                for (int i = 0; i < mine.size(); i += 8) {
                    store.recordOutcomes(mine.subList(i, Math.min(mine.size(), i + 8)), Set.of());
                }
                return null;
            }));
        }
        start.countDown();
        for (Future<?> f : done) {
            f.get();
        }
        pool.shutdown();
        for (TaskRecord t : tasks) {
            assertThat(store.find("acme", t.id()).orElseThrow().status()).isEqualTo(TaskStatus.COMPLETED);
        }
        long rows = db.database().jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM execution_results")
                .mapTo(Long.class).one());
        assertThat(rows).isEqualTo(160);
    }
}
