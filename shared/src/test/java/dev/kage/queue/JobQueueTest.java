package dev.kage.queue;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.redis.KageKeys;
import dev.kage.task.JobMessage;
import dev.kage.task.Priority;
import dev.kage.testing.RedisFixture;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class JobQueueTest {
    private final RedisFixture redis = new RedisFixture();
    private final JobQueue queue = new JobQueue(redis.keys(), redis.redis());
    private final StatefulRedisConnection<String, String> blocking = redis.client().connect();

    @AfterEach
    void cleanUp() {
        blocking.close();
        redis.close();
    }

    @Test
    void jobsAddedBeforeAnyWorkerCreatedTheGroupAreStillDelivered() {
        queue.enqueue(job("t1", Priority.NORMAL));
        queue.ensureStreams("demo");
        List<ClaimedJob> claimed = queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(100));
        assertThat(claimed).hasSize(1);
        assertThat(claimed.getFirst().job().taskId()).isEqualTo("t1");
    }

    @Test
    void higherPriorityIsServedFirst() {
        queue.ensureStreams("demo");
        queue.enqueue(job("low", Priority.LOW));
        queue.enqueue(job("normal", Priority.NORMAL));
        queue.enqueue(job("high", Priority.HIGH));
        assertThat(readOne().job().taskId()).isEqualTo("high");
        assertThat(readOne().job().taskId()).isEqualTo("normal");
        assertThat(readOne().job().taskId()).isEqualTo("low");
        assertThat(queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(100))).isEmpty();
    }

    @Test
    void anEntryStaysPendingUntilAcknowledged() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob claimed = readOne();
        String stream = redis.keys().jobStream("demo", Priority.NORMAL);
        assertThat(redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount()).isEqualTo(1);
        queue.ack(claimed);
        assertThat(redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount()).isZero();
    }

    @Test
    void anEntryThatIsNotAJobIsReportedAndCanBeDeadLettered() {
        queue.ensureStreams("demo");
        String stream = redis.keys().jobStream("demo", Priority.NORMAL);
        redis.redis().xadd(stream, Map.of("garbage", "1"));
        ClaimedJob claimed = readOne();
        assertThatThrownBy(claimed::job).isInstanceOf(JobQueue.MalformedJobException.class)
                .hasMessageContaining("job field 'job_id' is missing");
        queue.deadLetter(claimed, "not a job", 10_000);
        assertThat(redis.redis().xlen(redis.keys().deadLetters())).isEqualTo(1);
        assertThat(redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount()).isZero();
    }

    @Test
    void aReplayThatFailedCanBeMadeAgainAndConcurrentReplaysEnqueueOnce() throws Exception {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob claimed = readOne();
        String letterId = queue.deadLetter(claimed, "gave up", 10_000);
        JobQueue.DeadLetter letter = queue.deadLetter(letterId).orElseThrow();
        String stream = redis.keys().jobStream("demo", Priority.NORMAL);

        // Redis refuses the enqueue (the stream's key holds a string): the replay fails and leaves no mark behind.
        redis.redis().del(stream);
        redis.redis().set(stream, "not a stream");
        assertThatThrownBy(() -> queue.replay(letter, 2)).hasMessageContaining("WRONGTYPE");
        assertThat(redis.redis().exists(redis.keys().replayed("demo", letterId))).isZero();
        assertThat(queue.deadLetter(letterId)).as("still listed").isPresent();

        redis.redis().del(stream);
        List<java.util.concurrent.Future<java.util.Optional<JobMessage>>> replays = new java.util.ArrayList<>();
        java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
        try (var pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < 8; i++) {
                replays.add(pool.submit(() -> {
                    go.await();
                    return queue.replay(letter, 2);
                }));
            }
            go.countDown();
            long enqueued = 0;
            for (var replay : replays) {
                enqueued += replay.get(10, java.util.concurrent.TimeUnit.SECONDS).isPresent() ? 1 : 0;
            }
            assertThat(enqueued).as("replays that enqueued").isEqualTo(1);
        }
        assertThat(redis.redis().xlen(stream)).isEqualTo(1);
        assertThat(redis.redis().exists(redis.keys().replayed("demo", letterId))).isEqualTo(1);
        assertThat(queue.deadLetter(letterId)).isEmpty();
        assertThat(queue.replay(letter, 2)).as("replayed already").isEmpty();
        // The replayed job ran and its outcome is recorded, so its enqueue-once marker went: a replay still adds nothing.
        redis.redis().del(redis.keys().enqueued("demo", letter.job().jobId(), 2));
        assertThat(queue.replay(letter, 2)).isEmpty();
        assertThat(redis.redis().xlen(stream)).as("never run twice").isEqualTo(1);
    }

    @Test
    void aReplayWhoseAttemptIsInTheStreamAlreadyMarksTheLetterAndAddsNothing() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t2", Priority.NORMAL));
        ClaimedJob claimed = readOne();
        JobQueue.DeadLetter letter = queue.deadLetter(queue.deadLetter(claimed, "gave up", 10_000)).orElseThrow();
        // e.g. a replay by a coordinator of before session 9 that died between its enqueue and removing the letter
        queue.enqueue(letter.job().withAttempt(2));
        assertThat(queue.replay(letter, 2)).as("the job is queued: reported so its task reopens").isPresent();
        assertThat(redis.redis().xlen(redis.keys().jobStream("demo", Priority.NORMAL))).isEqualTo(2);
        assertThat(queue.deadLetter(letter.id())).isEmpty();
        assertThat(queue.replay(letter, 2)).isEmpty();
    }

    @Test
    void aBatchRedisRefusesPartWayLeavesNoMarkerWithoutItsEntrySoItsRetryAddsTheRest() {
        // The low stream's key holds a string: jobs before the first low one go in, that one fails with its marker gone.
        String low = redis.keys().jobStream("demo", Priority.LOW);
        redis.redis().set(low, "not a stream");
        List<JobMessage> jobs = List.of(job("a", Priority.NORMAL), job("b", Priority.LOW), job("c", Priority.HIGH));
        assertThatThrownBy(() -> queue.enqueueAll(jobs)).hasMessageContaining("WRONGTYPE");
        assertThat(redis.redis().exists(redis.keys().enqueued("demo", jobs.get(1).jobId(), 1))).isZero();
        redis.redis().del(low);
        assertThat(queue.enqueueAll(jobs)).as("the refused job and the ones after it").isEqualTo(2);
        for (Priority priority : Priority.values()) {
            assertThat(redis.redis().xlen(redis.keys().jobStream("demo", priority))).as(priority.wireName()).isEqualTo(1);
        }
    }

    @Test
    void aTenantsDeadLettersAreFoundBehindAnotherTenantsManyNewerOnes() {
        String dead = redis.keys().deadLetters();
        List<String> quiet = new java.util.ArrayList<>();
        for (int i = 0; i < 3; i++) {
            quiet.add(redis.redis().xadd(dead, Map.of("tenant", "quiet", "n", Integer.toString(i))));
        }
        for (int i = 0; i < 1_200; i++) {
            redis.redis().xadd(dead, Map.of("tenant", "busy", "n", Integer.toString(i)));
        }
        assertThat(queue.deadLetters("quiet", null, 50, 100_000)).extracting(JobQueue.DeadLetter::id)
                .containsExactly(quiet.get(2), quiet.get(1), quiet.get(0));
        assertThat(queue.deadLetters("quiet", null, 2, 100_000)).extracting(JobQueue.DeadLetter::id)
                .containsExactly(quiet.get(2), quiet.get(1));
        assertThat(queue.deadLetters("busy", null, 10, 100_000)).hasSize(10);
        assertThat(queue.deadLetters("quiet", null, 50, 1_000)).as("the scan is bounded").isEmpty();
    }

    @Test
    void theDeadLettersKeepTheNewestKageDeadLetterMaxAndNoneOlderThanTheirMaxAge() {
        queue.ensureStreams("demo");
        String dead = redis.keys().deadLetters();
        // Letters from before: two a year old, then eight recent ones.
        long now = queue.serverMillis();
        String yearOld = redis.redis().xadd(dead, new io.lettuce.core.XAddArgs().id((now - 366L * 86_400_000) + "-0"),
                Map.of("tenant", "acme", "n", "old-1"));
        redis.redis().xadd(dead, new io.lettuce.core.XAddArgs().id((now - 366L * 86_400_000) + "-1"), Map.of("tenant", "acme", "n", "old-2"));
        for (int i = 0; i < 8; i++) {
            redis.redis().xadd(dead, Map.of("tenant", "acme", "n", "recent-" + i));
        }
        assertThat(queue.dropDeadLettersOlderThan(java.time.Duration.ofDays(180))).isEqualTo(2);
        assertThat(queue.deadLetter(yearOld)).isEmpty();
        assertThat(redis.redis().xlen(dead)).isEqualTo(8);
        assertThat(queue.dropDeadLettersOlderThan(java.time.Duration.ofDays(180))).as("nothing more is that old").isZero();
        assertThat(queue.dropDeadLettersOlderThan(java.time.Duration.ofDays(36_500))).as("a cutoff before 1970").isZero();

        // A poison job beyond the cap: the oldest letters go, exactly down to the cap, and the new one stays.
        queue.enqueue(job("poison", Priority.NORMAL));
        String newest = queue.deadLetter(readOne(), "gave up", 5);
        assertThat(redis.redis().xlen(dead)).isEqualTo(5);
        var kept = redis.redis().xrange(dead, io.lettuce.core.Range.create("-", "+"));
        assertThat(kept).extracting(m -> m.getBody().get("n")).containsExactly("recent-4", "recent-5", "recent-6", "recent-7", null);
        assertThat(kept.getLast().getId()).isEqualTo(newest);
    }

    @Test
    void aDiscardAndAReplayOfOneLetterCannotBothHappen() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t-discard", Priority.NORMAL));
        JobQueue.DeadLetter letter = queue.deadLetter(queue.deadLetter(readOne(), "gave up", 10_000)).orElseThrow();
        // A replay of it took its mark already (its enqueue under way): the discard must not remove it too.
        redis.redis().set(redis.keys().replayed("demo", letter.id()), "1");
        assertThat(queue.discardDeadLetter(letter)).isFalse();
        assertThat(queue.deadLetter(letter.id())).isPresent();
        redis.redis().del(redis.keys().replayed("demo", letter.id()));
        // Discarded first: a replay then finds the mark and adds nothing.
        assertThat(queue.discardDeadLetter(letter)).isTrue();
        assertThat(queue.deadLetter(letter.id())).isEmpty();
        assertThat(queue.replay(letter, 2)).isEmpty();
        assertThat(redis.redis().xlen(redis.keys().jobStream("demo", Priority.NORMAL))).as("only the first delivery").isEqualTo(1);

        // An earlier discard took the mark but its removal failed: a discard again finishes it.
        queue.enqueue(job("t-discard-2", Priority.NORMAL));
        JobQueue.DeadLetter second = queue.deadLetter(queue.deadLetter(readOne(), "gave up", 10_000)).orElseThrow();
        redis.redis().set(redis.keys().replayed("demo", second.id()), "discarded");
        assertThat(queue.discardDeadLetter(second)).isTrue();
        assertThat(queue.deadLetter(second.id())).isEmpty();
    }

    @Test
    void ensuringStreamsTwiceIsHarmless() {
        queue.ensureStreams("demo");
        queue.ensureStreams("demo");
        assertThat(redis.redis().xinfoGroups(redis.keys().jobStream("demo", Priority.HIGH))).hasSize(1);
    }

    private ClaimedJob readOne() {
        List<ClaimedJob> claimed = queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(100));
        assertThat(claimed).hasSize(1);
        return claimed.getFirst();
    }

    @Test
    void markersOfManyJobsAreReadInOnePipelinedCheck() {
        List<JobMessage> jobs = new java.util.ArrayList<>();
        for (int i = 0; i < 30; i++) {
            jobs.add(new JobMessage(JobMessage.jobId("m" + i, "demo"), "m" + i, "acme", "demo", Priority.NORMAL, "x", "", "main",
                    60, 1000, 1 + i % 2));
        }
        List<JobMessage> enqueued = jobs.stream().filter(j -> j.taskId().hashCode() % 3 == 0).toList();
        enqueued.forEach(queue::enqueue);
        // The same job as another attempt has a marker of its own.
        JobMessage otherAttempt = enqueued.getFirst().withAttempt(enqueued.getFirst().attempt() + 1);
        List<JobMessage> asked = new java.util.ArrayList<>(jobs);
        asked.add(otherAttempt);
        assertThat(queue.enqueuedAmong(asked)).containsExactlyInAnyOrderElementsOf(enqueued);
        assertThat(queue.enqueuedAmong(List.of())).isEmpty();
    }

    @Test
    void aBatchAddsEachAttemptOnceToItsAgentsPriorityStreamInOrder() {
        // Two agents, three priorities, more jobs than one script call takes, one attempt already in its stream.
        List<JobMessage> jobs = new java.util.ArrayList<>();
        Priority[] priorities = Priority.values();
        for (int i = 0; i < 2 * JobQueue.ENQUEUE_CHUNK + 50; i++) {
            String agent = i % 3 == 0 ? "other" : "demo";
            JobMessage job = new JobMessage(JobMessage.jobId("t" + i, agent), "t" + i, "acme", agent, priorities[i % priorities.length],
                    "do it " + i + " — 日本語 🚀", i % 7 == 0 ? "" : "/srv/repo-" + i, "main", 60, 1000 + i, 1 + i % 2);
            // Some met a 429 already: their entries have one field more.
            jobs.add(i % 5 == 0 ? job.withRateLimitRetry() : job);
        }
        JobMessage early = jobs.get(7);
        assertThat(queue.enqueue(early)).isPresent();

        assertThat(queue.enqueueAll(jobs)).isEqualTo(jobs.size() - 1);
        assertThat(queue.enqueueAll(jobs)).as("every attempt is in already").isZero();

        for (String agent : List.of("demo", "other")) {
            for (Priority priority : priorities) {
                List<JobMessage> expected = jobs.stream().filter(j -> j.agent().equals(agent) && j.priority() == priority).toList();
                List<JobMessage> inStream = entries(agent, priority);
                if (early.agent().equals(agent) && early.priority() == priority) {
                    // The early one went in first; the rest keep the batch's order.
                    assertThat(inStream).first().isEqualTo(early);
                    assertThat(inStream.subList(1, inStream.size()))
                            .containsExactlyElementsOf(expected.stream().filter(j -> j != early).toList());
                } else {
                    assertThat(inStream).as(agent + " " + priority).containsExactlyElementsOf(expected);
                }
            }
        }
    }

    @Test
    void aBatchReachesARedisThatForgotTheScriptThroughTheFallbackEachJobOnce() {
        // The script cache is emptied, as by a restart: the SCRIPT LOAD pipelined ahead of the calls loads it again, and
        // the calls (EVALSHA) run in order.
        org.junit.jupiter.api.Assumptions.assumeTrue(dev.kage.testing.PrivateRedis.available(), "redis-server is not installed");
        try (var server = dev.kage.testing.PrivateRedis.start(false)) {
            io.lettuce.core.RedisClient client = io.lettuce.core.RedisClient.create(server.url());
            try (StatefulRedisConnection<String, String> connection = client.connect()) {
                var commands = connection.sync();
                JobQueue fresh = new JobQueue(redis.keys(), commands);
                List<JobMessage> jobs = new java.util.ArrayList<>();
                for (int i = 0; i < 3 * JobQueue.ENQUEUE_CHUNK + 1; i++) {
                    jobs.add(job("t" + i, Priority.NORMAL));
                }
                fresh.enqueueAll(jobs.subList(0, 10));
                commands.scriptFlush();

                assertThat(fresh.enqueueAll(jobs)).as("the first ten were in already").isEqualTo(jobs.size() - 10);
                assertThat(commands.xrange(redis.keys().jobStream("demo", Priority.NORMAL), io.lettuce.core.Range.create("-", "+"))
                        .stream().map(m -> JobMessage.fromFields(m.getBody())).toList()).containsExactlyElementsOf(jobs);
            } finally {
                client.shutdown();
            }
        }
    }

    @Test
    void aServerProcessTellsTheEntriesAnEarlierProcessMayHaveDeliveredFromThoseItAddedItself() throws Exception {
        // The worker's restart hold: entries older than the Redis process that hands them out may have been delivered by
        // the one before it. A private server, restarted from a snapshot holding an entry: that entry predates the new
        // process, one added after the restart (two seconds later: uptime is the difference of two whole seconds) does not.
        org.junit.jupiter.api.Assumptions.assumeTrue(dev.kage.testing.PrivateRedis.available(), "redis-server is not installed");
        try (var server = dev.kage.testing.PrivateRedis.start(false)) {
            io.lettuce.core.RedisClient client = io.lettuce.core.RedisClient.create(server.url());
            try (StatefulRedisConnection<String, String> connection = client.connect()) {
                var commands = connection.sync();
                String before = commands.xadd("s", Map.of("k", "v"));
                commands.save();
                JobQueue.ServerProcess first = JobQueue.server(commands);
                server.restart();
                JobQueue.ServerProcess restarted = JobQueue.server(commands);
                assertThat(restarted.runId()).isNotEqualTo(first.runId());
                assertThat(restarted.uptime()).isLessThan(JobQueue.LOST_ENTRY_GRACE);
                assertThat(restarted.timeMillis()).isPositive();
                assertThat(commands.xlen("s")).as("the snapshot was loaded").isEqualTo(1);
                assertThat(restarted.mayPredate(before)).isTrue();
                await().atMost(Duration.ofSeconds(5)).until(() -> JobQueue.server(commands).uptime().toSeconds() >= 2);
                String after = commands.xadd("s", Map.of("k", "v"));
                JobQueue.ServerProcess later = JobQueue.server(commands);
                assertThat(later.mayPredate(after)).isFalse();
                assertThat(later.mayPredate(before)).isTrue();
                // A server that does not tell its time: every entry may predate it.
                assertThat(new JobQueue.ServerProcess("r", Duration.ofSeconds(3), 0).mayPredate(after)).isTrue();
            } finally {
                client.shutdown();
            }
        }
    }

    private List<JobMessage> entries(String agent, Priority priority) {
        return redis.redis().xrange(redis.keys().jobStream(agent, priority), io.lettuce.core.Range.create("-", "+")).stream()
                .map(m -> JobMessage.fromFields(m.getBody())).toList();
    }

    private static JobMessage job(String taskId, Priority priority) {
        return new JobMessage(JobMessage.jobId(taskId, "demo"), taskId, "acme", "demo", priority, "do it", "", "main", 60,
                1000, 1);
    }
}
