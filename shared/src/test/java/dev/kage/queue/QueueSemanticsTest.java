package dev.kage.queue;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.queue.JobQueue.Ownership;
import dev.kage.redis.KageKeys;
import dev.kage.task.JobMessage;
import dev.kage.task.Priority;
import dev.kage.testing.RedisFixture;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Enqueue-once, delayed jobs, refresh, reclaim, hand-back, trimming and the priority rule, on real Redis. */
class QueueSemanticsTest {
    private final RedisFixture redis = new RedisFixture();
    private final JobQueue queue = new JobQueue(redis.keys(), redis.redis());
    private final StatefulRedisConnection<String, String> blocking = redis.client().connect();

    @AfterEach
    void cleanUp() {
        blocking.close();
        redis.close();
    }

    @Test
    void anAttemptIsEnqueuedOnceHoweverOftenItIsAsked() throws Exception {
        queue.ensureStreams("demo");
        JobMessage job = job("t1", Priority.NORMAL);
        ExecutorService pool = Executors.newFixedThreadPool(8);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<Boolean>> added = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            StatefulRedisConnection<String, String> connection = redis.client().connect();
            JobQueue own = new JobQueue(redis.keys(), connection.sync());
            added.add(pool.submit(() -> {
                start.await();
                try {
                    return own.enqueue(job).isPresent();
                } finally {
                    connection.close();
                }
            }));
        }
        start.countDown();
        int count = 0;
        for (Future<Boolean> f : added) {
            count += f.get() ? 1 : 0;
        }
        pool.shutdown();
        assertThat(count).isEqualTo(1);
        assertThat(redis.redis().xlen(stream(Priority.NORMAL))).isEqualTo(1);
        assertThat(queue.enqueue(job.withAttempt(2))).as("the next attempt is a new job").isPresent();
    }

    @Test
    void aDeferredJobComesBackWhenDueExactlyOnceWhoeverPromotesIt() throws Exception {
        queue.ensureStreams("demo");
        for (int i = 0; i < 20; i++) {
            queue.enqueue(job("t" + i, Priority.HIGH));
        }
        List<ClaimedJob> claimed = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            claimed.addAll(queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(50)));
        }
        for (ClaimedJob c : claimed) {
            queue.defer(c, c.job().withAttempt(2), Duration.ZERO);
        }
        assertThat(redis.redis().xpending(stream(Priority.HIGH), KageKeys.WORKER_GROUP).getCount()).isZero();
        assertThat(queue.delayed("demo")).isEqualTo(20);

        ExecutorService pool = Executors.newFixedThreadPool(6);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<Long>> moved = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            StatefulRedisConnection<String, String> connection = redis.client().connect();
            JobQueue own = new JobQueue(redis.keys(), connection.sync());
            moved.add(pool.submit(() -> {
                start.await();
                try {
                    return own.promoteDue("demo");
                } finally {
                    connection.close();
                }
            }));
        }
        start.countDown();
        long total = 0;
        for (Future<Long> f : moved) {
            total += f.get();
        }
        pool.shutdown();
        assertThat(total).isEqualTo(20);
        assertThat(queue.delayed("demo")).isZero();
        List<ClaimedJob> again = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            again.addAll(queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(50)));
        }
        assertThat(again).hasSize(20).allSatisfy(c -> assertThat(c.job().attempt()).isEqualTo(2));
        assertThat(again.stream().map(c -> c.job().taskId()).distinct()).hasSize(20);
    }

    @Test
    void aWorkerWhoseEntryWasReclaimedCannotDeferIt() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob mine = readOne("w1");
        assertThat(queue.claim(mine.stream(), "w2", Duration.ZERO, mine.entryId())).isPresent();
        assertThat(queue.defer(mine, mine.job().withAttempt(2), Duration.ZERO, "w1")).as("w2 owns it now").isEmpty();
        assertThat(queue.delayed("demo")).isZero();
        assertThat(redis.redis().xpending(mine.stream(), KageKeys.WORKER_GROUP).getCount()).as("still w2's").isEqualTo(1);
        assertThat(queue.defer(mine, mine.job().withAttempt(2), Duration.ZERO, "w2")).isPresent();
        assertThat(queue.delayed("demo")).isEqualTo(1);
    }

    @Test
    void aJobNotYetDueStaysDelayed() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob c = readOne("w1");
        Instant due = queue.defer(c, c.job().withAttempt(2), Duration.ofHours(1));
        assertThat(due).isBetween(Instant.now().plusSeconds(3590), Instant.now().plusSeconds(3610));
        assertThat(queue.promoteDue("demo")).isZero();
        assertThat(queue.delayed("demo")).isEqualTo(1);
    }

    @Test
    void refreshTellsOwnedTakenAndGoneApart() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob mine = readOne("w1");
        assertThat(queue.refresh(mine, "w1")).isEqualTo(Ownership.OWNED);
        assertThat(queue.claim(mine.stream(), "w2", Duration.ZERO, mine.entryId())).isPresent();
        assertThat(queue.refresh(mine, "w1")).isEqualTo(Ownership.TAKEN);
        queue.ack(mine);
        assertThat(queue.refresh(mine, "w1")).isEqualTo(Ownership.GONE);
    }

    @Test
    void refreshingKeepsAnEntryFromLookingStaleAndDoesNotCountADelivery() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob mine = readOne("w1");
        for (int i = 0; i < 3; i++) {
            queue.refresh(mine, "w1");
        }
        List<JobQueue.PendingEntry> all = queue.stale("demo", Duration.ZERO, 10);
        assertThat(all).singleElement().satisfies(p -> {
            assertThat(p.consumer()).isEqualTo("w1");
            assertThat(p.deliveries()).isEqualTo(1);
        });
        assertThat(queue.stale("demo", Duration.ofSeconds(5), 10)).isEmpty();
    }

    @Test
    void staleEntriesBehindManyThatTheReclaimerPassesOverAreStillFound() {
        // A live worker's 130 finished jobs wait for Postgres (idle, not refreshed, still listed as its own), and a dead
        // worker's 3 jobs were claimed after them: a reclaimer's window of the oldest 50 would show only the live ones.
        queue.ensureStreams("demo");
        for (int i = 0; i < 133; i++) {
            queue.enqueue(job("t" + i, Priority.NORMAL));
        }
        for (int i = 0; i < 130; i++) {
            readOne("live");
        }
        List<String> dead = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            dead.add(readOne("dead").entryId());
        }
        JobQueue.Stale stale = queue.stale("demo", Duration.ZERO, 50, 5_000, entry -> entry.consumer().equals("live"));
        assertThat(stale.entries()).extracting(JobQueue.PendingEntry::entryId).containsExactlyElementsOf(dead);
        assertThat(stale.truncated()).isFalse();

        // At most a window per stream, and a sign that more may follow.
        JobQueue.Stale first = queue.stale("demo", Duration.ZERO, 2, 5_000, entry -> entry.consumer().equals("live"));
        assertThat(first.entries()).extracting(JobQueue.PendingEntry::entryId).containsExactlyElementsOf(dead.subList(0, 2));
        assertThat(first.truncated()).isTrue();
        // No further than asked: the dead entries lie beyond the first 100 read.
        JobQueue.Stale bounded = queue.stale("demo", Duration.ZERO, 50, 100, entry -> entry.consumer().equals("live"));
        assertThat(bounded.entries()).isEmpty();
        assertThat(bounded.truncated()).isTrue();
        assertThat(queue.stale("demo", Duration.ZERO, 50)).as("one window, nothing passed over").hasSize(50)
                .allSatisfy(entry -> assertThat(entry.consumer()).isEqualTo("live"));
    }

    @Test
    void theIdAfterAStreamIdIsTheNextSequenceOrTheNextMillisecond() {
        assertThat(JobQueue.nextId("1700000000000-0")).isEqualTo("1700000000000-1");
        assertThat(JobQueue.nextId("1700000000000-41")).isEqualTo("1700000000000-42");
        assertThat(JobQueue.nextId("1700000000000-18446744073709551615")).isEqualTo("1700000000001-0");
    }

    @Test
    void twoReclaimersRacingForOneEntryCannotBothWin() throws Exception {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob dead = readOne("dead-worker");
        await(Duration.ofMillis(300));
        ExecutorService pool = Executors.newFixedThreadPool(4);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<Boolean>> wins = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            String me = "reclaimer-" + i;
            StatefulRedisConnection<String, String> connection = redis.client().connect();
            JobQueue own = new JobQueue(redis.keys(), connection.sync());
            wins.add(pool.submit(() -> {
                start.await();
                try {
                    return own.claim(dead.stream(), me, Duration.ofMillis(200), dead.entryId()).isPresent();
                } finally {
                    connection.close();
                }
            }));
        }
        start.countDown();
        int winners = 0;
        for (Future<Boolean> w : wins) {
            winners += w.get() ? 1 : 0;
        }
        pool.shutdown();
        assertThat(winners).isEqualTo(1);
        assertThat(queue.stale("demo", Duration.ZERO, 10)).singleElement()
                .satisfies(p -> assertThat(p.deliveries()).isEqualTo(2));
    }

    @Test
    void aHandedBackJobIsAtOnceAvailableToAnotherWorker() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob mine = readOne("w1");
        assertThat(queue.handBack(mine, "w1")).isTrue();
        assertThat(queue.handBack(mine, "w1")).as("a second hand-back adds nothing").isFalse();
        ClaimedJob theirs = readOne("w2");
        assertThat(theirs.job()).isEqualTo(mine.job());
        assertThat(redis.redis().xpending(stream(Priority.NORMAL), KageKeys.WORKER_GROUP).getCount()).isEqualTo(1);
        // How long the job has waited survives it (a job that waited days must still ask Postgres about a cancel).
        long first = Long.parseLong(mine.entryId().substring(0, mine.entryId().indexOf('-')));
        assertThat(theirs.entryId()).isNotEqualTo(mine.entryId());
        assertThat(theirs.queuedSinceMillis()).isEqualTo(mine.queuedSinceMillis()).isEqualTo(first);
        assertThat(queue.handBack(theirs, "w2")).isTrue();
        assertThat(readOne("w3").queuedSinceMillis()).as("and a second hand-back").isEqualTo(first);
    }

    @Test
    void aWorkerCannotHandBackAnEntryAnotherWorkerReclaimed() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob mine = readOne("w1");
        ClaimedJob reclaimed = queue.claim(mine.stream(), "w2", Duration.ZERO, mine.entryId()).orElseThrow();
        // w1, shutting down, hands back what it still thinks is its own: nothing changes, w2 keeps running it.
        assertThat(queue.handBack(mine, "w1")).isFalse();
        assertThat(redis.redis().xlen(stream(Priority.NORMAL))).as("no second entry").isEqualTo(1);
        assertThat(queue.stale("demo", Duration.ZERO, 10)).singleElement()
                .satisfies(p -> assertThat(p.consumer()).isEqualTo("w2"));
        assertThat(queue.handBack(reclaimed, "w2")).isTrue();
    }

    @Test
    void aConsumerHoldingPendingEntriesIsNeverRemoved() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob held = readOne("gone-worker");
        assertThat(queue.removeConsumerIfIdle(held.stream(), "gone-worker")).isFalse();
        assertThat(queue.consumers(held.stream())).contains("gone-worker");
        queue.ack(held);
        assertThat(queue.removeConsumerIfIdle(held.stream(), "gone-worker")).isTrue();
        assertThat(queue.consumers(held.stream())).doesNotContain("gone-worker");
    }

    @Test
    void trimmingRemovesOnlyAcknowledgedEntries() {
        queue.ensureStreams("demo");
        for (int i = 0; i < 30; i++) {
            queue.enqueue(job("t" + i, Priority.NORMAL));
        }
        List<ClaimedJob> claimed = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            claimed.add(readOne("w1"));
        }
        for (int i = 0; i < 20; i++) {
            if (i != 5) {
                queue.ack(claimed.get(i));
            }
        }
        long removed = queue.trim("demo", 2);
        assertThat(removed).as("entries before the oldest pending one").isEqualTo(5);
        Map<String, String> first = redis.redis().xrange(stream(Priority.NORMAL), io.lettuce.core.Range.create("-", "+"),
                io.lettuce.core.Limit.from(1)).getFirst().getBody();
        assertThat(first.get("task_id")).isEqualTo("t5");
        queue.ack(claimed.get(5));
        queue.trim("demo", 2);
        // 10 never delivered remain; the last delivered one stays as the group's mark.
        assertThat(redis.redis().xlen(stream(Priority.NORMAL))).isEqualTo(11);
        List<ClaimedJob> rest = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            rest.add(readOne("w1"));
        }
        assertThat(rest.stream().map(c -> c.job().taskId())).containsExactly("t20", "t21", "t22", "t23", "t24", "t25", "t26",
                "t27", "t28", "t29");
    }

    @Test
    void trimmingKeepsExactlyTheNewestAcknowledgedEntriesReadFromWhicheverEndIsNearer() {
        queue.ensureStreams("demo");
        for (int i = 0; i < 30; i++) {
            queue.enqueue(job("k" + i, Priority.NORMAL));
        }
        for (int i = 0; i < 30; i++) {
            queue.ack(readOne("w1"));
        }
        // 30 acknowledged: keeping 25 and then 20 reads the few oldest; keeping 10 reads the 10 newest.
        assertThat(queue.trim("demo", 25)).isEqualTo(5);
        assertThat(queue.trim("demo", 20)).isEqualTo(5);
        assertThat(queue.trim("demo", 10)).isEqualTo(10);
        assertThat(queue.trim("demo", 10)).as("nothing more").isZero();
        assertThat(redis.redis().xrange(stream(Priority.NORMAL), io.lettuce.core.Range.create("-", "+")).stream()
                .map(m -> m.getBody().get("task_id"))).containsExactly("k20", "k21", "k22", "k23", "k24", "k25", "k26", "k27",
                "k28", "k29");
    }

    @Test
    void underABacklogHighGoesFirstButNoPriorityStarves() {
        queue.ensureStreams("demo");
        for (int i = 0; i < 20; i++) {
            queue.enqueue(job("low-" + i, Priority.LOW));
            queue.enqueue(job("normal-" + i, Priority.NORMAL));
            queue.enqueue(job("high-" + i, Priority.HIGH));
        }
        List<String> order = new ArrayList<>();
        for (long round = 0; round < 60; round++) {
            List<ClaimedJob> claimed = queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(50), round);
            claimed.forEach(c -> order.add(c.job().taskId()));
        }
        assertThat(order).hasSize(60);
        List<String> firstTwenty = order.subList(0, 20);
        assertThat(firstTwenty.getFirst()).startsWith("high-");
        assertThat(firstTwenty.stream().filter(s -> s.startsWith("high-")).count()).isGreaterThanOrEqualTo(12);
        assertThat(firstTwenty.stream().filter(s -> s.startsWith("normal-")).count()).isGreaterThanOrEqualTo(4);
        assertThat(firstTwenty.stream().filter(s -> s.startsWith("low-")).count()).isGreaterThanOrEqualTo(1);
        Map<String, List<Integer>> byPriority = new HashMap<>();
        for (String id : order) {
            byPriority.computeIfAbsent(id.substring(0, id.indexOf('-')), k -> new ArrayList<>())
                    .add(Integer.parseInt(id.substring(id.indexOf('-') + 1)));
        }
        byPriority.values().forEach(seq -> assertThat(seq).as("first in, first out within a priority").isSorted());
    }

    private ClaimedJob readOne(String consumer) {
        List<ClaimedJob> claimed = queue.read(blocking.sync(), "demo", consumer, Duration.ofMillis(100));
        assertThat(claimed).hasSize(1);
        return claimed.getFirst();
    }

    private String stream(Priority priority) {
        return redis.keys().jobStream("demo", priority);
    }

    private static void await(Duration duration) {
        org.awaitility.Awaitility.await().pollDelay(duration).until(() -> true);
    }

    private static JobMessage job(String taskId, Priority priority) {
        return new JobMessage(JobMessage.jobId(taskId, "demo"), taskId, "acme", "demo", priority, "do it", "", "main", 60,
                1000, 1);
    }
}
