package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;
import dev.kage.task.Priority;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Idempotent submit under concurrent duplicates, cancel answers, and the reconciler closing the dual-write gap. */
class SubmitSafetyApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String BODY =
            "{\"description\": \"Quick test\", \"cli_assignments\": [{\"cli_name\": \"claude-code\", \"timeout\": 60}]}";
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123,globex:globex-key-456");
    }

    @AfterAll
    static void stop() throws Exception {
        coordinator.close();
    }

    @Test
    void concurrentDuplicatesWithOneIdempotencyKeyCreateOneTask() throws Exception {
        String key = "order-" + UUID.randomUUID();
        ExecutorService pool = Executors.newFixedThreadPool(16);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<HttpResponse<String>>> responses = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            responses.add(pool.submit(() -> {
                start.await();
                return submit("acme-key-123", key, BODY);
            }));
        }
        start.countDown();
        List<String> ids = new ArrayList<>();
        long replayed = 0;
        for (Future<HttpResponse<String>> response : responses) {
            HttpResponse<String> r = response.get();
            assertThat(r.statusCode()).as(r.body()).isEqualTo(202);
            ids.add(JSON.readTree(r.body()).get("task_id").asText());
            replayed += r.headers().firstValue("Idempotent-Replayed").orElse("").equals("true") ? 1 : 0;
        }
        pool.shutdown();
        assertThat(ids).containsOnly(ids.getFirst());
        assertThat(replayed).isEqualTo(15);
        String stream = coordinator.redis().keys().jobStream("claude-code", Priority.NORMAL);
        long jobs = coordinator.redis().redis().xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .filter(m -> ids.getFirst().equals(m.getBody().get("task_id"))).count();
        assertThat(jobs).as("one job in Redis").isEqualTo(1);

        HttpResponse<String> otherTenant = submit("globex-key-456", key, BODY);
        assertThat(otherTenant.statusCode()).isEqualTo(202);
        assertThat(JSON.readTree(otherTenant.body()).get("task_id").asText()).as("keys are per tenant").isNotEqualTo(ids.getFirst());
    }

    @Test
    void aKeyReusedWithADifferentBodyIs422AndMalformedKeysAre400() throws Exception {
        String key = "k-" + UUID.randomUUID();
        assertThat(submit("acme-key-123", key, BODY).statusCode()).isEqualTo(202);
        HttpResponse<String> different = submit("acme-key-123", key, BODY.replace("Quick test", "Other test"));
        assertThat(different.statusCode()).isEqualTo(422);
        assertThat(JSON.readTree(different.body()).get("errors").get(0).get("field").asText()).isEqualTo("Idempotency-Key");
        HttpResponse<String> malformed = submit("acme-key-123", "x".repeat(201), BODY);
        assertThat(malformed.statusCode()).isEqualTo(400);
        assertThat(JSON.readTree(malformed.body()).get("errors").get(0).get("field").asText()).isEqualTo("Idempotency-Key");
    }

    @Test
    void cancelAnswers202Then409AndHidesOtherTenantsTasks() throws Exception {
        String id = JSON.readTree(submit("acme-key-123", null, BODY).body()).get("task_id").asText();
        assertThat(post("/api/v1/tasks/" + id + "/cancel", "globex-key-456").statusCode()).isEqualTo(404);
        HttpResponse<String> cancelled = post("/api/v1/tasks/" + id + "/cancel", "acme-key-123");
        assertThat(cancelled.statusCode()).isEqualTo(202);
        assertThat(JSON.readTree(cancelled.body()).get("previous_status").asText()).isEqualTo("queued");
        assertThat(post("/api/v1/tasks/" + id + "/cancel", "acme-key-123").statusCode()).isEqualTo(409);
        assertThat(coordinator.redis().redis().hget(coordinator.redis().keys().task("acme", id), "cancelled")).isEqualTo("1");
        assertThat(JSON.readTree(coordinator.get("/api/v1/tasks/" + id, "acme-key-123").body()).get("status").asText())
                .isEqualTo("cancelled");
        assertThat(post("/api/v1/tasks/not-a-task/cancel", "acme-key-123").statusCode()).isEqualTo(404);
        assertThat(post("/api/v1/dead-letters/not-an-id/replay", "acme-key-123").statusCode()).isEqualTo(404);
        // Shaped like an entry id but beyond 64 bits: Redis would refuse it with an error (it was a 503).
        assertThat(post("/api/v1/dead-letters/99999999999999999999-0/replay", "acme-key-123").statusCode()).isEqualTo(404);
        assertThat(post("/api/v1/dead-letters/1-99999999999999999999/replay", "acme-key-123").statusCode()).isEqualTo(404);
        HttpResponse<String> letters = coordinator.get("/api/v1/dead-letters", "acme-key-123");
        assertThat(letters.statusCode()).as(letters.body()).isEqualTo(200);
        assertThat(JSON.readTree(letters.body()).get("dead_letters").isArray()).as(letters.body()).isTrue();
    }

    @Test
    void aTaskWhoseJobsNeverReachedRedisIsEnqueuedByTheReconciler() throws Exception {
        // A task row as a coordinator that died right after the insert would leave it.
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var task = queuedTask("orphan", "demo");
        store.insert(task);
        database.jdbi().useHandle(h -> h.execute("UPDATE tasks SET created_at = now() - interval '1 minute' WHERE id = ?", task.id()));
        String stream = coordinator.redis().keys().jobStream("demo", Priority.NORMAL);
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() ->
                coordinator.redis().redis().xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                        .anyMatch(m -> task.id().toString().equals(m.getBody().get("task_id"))));
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10)).until(() ->
                database.jdbi().withHandle(h -> h.createQuery("SELECT enqueued_at IS NOT NULL FROM tasks WHERE id = :id")
                        .bind("id", task.id()).mapTo(Boolean.class).one()));
    }

    @Test
    void aJobRedisLostAfterItWasConfirmedIsEnqueuedAgainOnceAndAJobStillThereIsLeftAlone() throws Exception {
        // Tasks as a Redis that died with its machine leaves them: rows confirmed enqueued, the jobs' entries and
        // enqueue-once markers gone with the writes of its last second (agent "lost" is this test's own).
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var queue = coordinator.context().getBean(dev.kage.queue.JobQueue.class);
        var lost = queuedTask("lost with redis", "lost");
        var kept = queuedTask("still in redis", "lost");
        store.insert(lost);
        store.markAllEnqueued(List.of(lost.id()));
        store.insert(kept);
        String stream = coordinator.redis().keys().jobStream("lost", Priority.NORMAL);
        var keptJob = new dev.kage.task.JobMessage(dev.kage.task.JobMessage.jobId(kept.id().toString(), "lost"), kept.id().toString(),
                "acme", "lost", Priority.NORMAL, kept.description(), "", "main", 60, 1000, 1);
        assertThat(queue.enqueue(keptJob)).isPresent();
        store.markAllEnqueued(List.of(kept.id()));

        assertThat(coordinator.redis().redis().xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .filter(m -> lost.id().toString().equals(m.getBody().get("task_id")))).isEmpty();
        // The coordinator's own reconciler may make its first pass at the same time: then this call finds nothing to do.
        assertThat(service.requeueLost()).as("the lost job, not the kept one").isBetween(0, 1);
        assertThat(service.requeueLost()).as("a second pass adds nothing").isZero();
        var entries = coordinator.redis().redis().xrange(stream, io.lettuce.core.Range.create("-", "+"));
        assertThat(entries.stream().filter(m -> lost.id().toString().equals(m.getBody().get("task_id")))).hasSize(1);
        assertThat(entries.stream().filter(m -> kept.id().toString().equals(m.getBody().get("task_id")))).hasSize(1);
    }

    @Test
    void aCancelWhoseCoordinatorDiedBeforeTellingRedisIsPassedOnByAReconciler() throws Exception {
        // The cancel committed (task cancelled, its pending_cancels row written), then its coordinator died: Redis, where
        // workers look, never heard of it. Another coordinator's reconciler passes it on.
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var task = queuedTask("cancelled, then the coordinator died", "demo");
        store.insert(task);
        assertThat(store.cancel("acme", task.id())).contains(dev.kage.task.TaskStatus.QUEUED);
        String live = coordinator.redis().keys().task("acme", task.id().toString());
        assertThat(coordinator.redis().redis().hget(live, "cancelled")).isNull();
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30))
                .until(() -> "1".equals(coordinator.redis().redis().hget(live, "cancelled")));
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(5)).until(() -> database.jdbi().withHandle(h ->
                h.createQuery("SELECT count(*) FROM pending_cancels WHERE task_id = :id").bind("id", task.id())
                        .mapTo(Long.class).one()) == 0);

        // One made through the API reaches Redis at once and leaves no row behind.
        var other = queuedTask("cancelled through the API", "demo");
        store.insert(other);
        assertThat(post("/api/v1/tasks/" + other.id() + "/cancel", "acme-key-123").statusCode()).isEqualTo(202);
        assertThat(coordinator.redis().redis().hget(coordinator.redis().keys().task("acme", other.id().toString()), "cancelled"))
                .isEqualTo("1");
        long left = database.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM pending_cancels WHERE task_id = :id")
                .bind("id", other.id()).mapTo(Long.class).one());
        assertThat(left).isZero();
    }

    @Test
    void cancelsARestartedRedisLostArePassedOnAgainOlderOnesAndOpenTasksAreLeftAlone() throws Exception {
        // Three cancels reached Redis (their pending_cancels rows deleted); then Redis restarted from data that predates
        // two of them. One task is still open. One cancel is older than the live state's lifetime.
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var recent = queuedTask("cancelled a second before the restart", "demo");
        var earlier = queuedTask("cancelled an hour before the restart", "demo");
        var ancient = queuedTask("cancelled eight days before", "demo");
        var open = queuedTask("still queued", "demo");
        for (var task : List.of(recent, earlier, ancient, open)) {
            store.insert(task);
        }
        for (var task : List.of(recent, earlier, ancient)) {
            assertThat(post("/api/v1/tasks/" + task.id() + "/cancel", "acme-key-123").statusCode()).isEqualTo(202);
        }
        database.jdbi().useHandle(h -> {
            h.execute("UPDATE tasks SET cancel_requested_at = now() - interval '1 hour' WHERE id = ?::uuid", earlier.id().toString());
            h.execute("UPDATE tasks SET cancel_requested_at = now() - interval '8 days' WHERE id = ?::uuid", ancient.id().toString());
        });
        java.util.function.Function<dev.kage.task.TaskRecord, String> key = task ->
                coordinator.redis().keys().task("acme", task.id().toString());
        for (var task : List.of(recent, earlier, ancient)) {
            assertThat(coordinator.redis().redis().hget(key.apply(task), "cancelled")).isEqualTo("1");
            coordinator.redis().redis().hdel(key.apply(task), "cancelled");
            coordinator.redis().redis().hset(key.apply(task), "status", "queued");
        }

        assertThat(service.passOnRecentCancels()).isGreaterThanOrEqualTo(2);
        for (var task : List.of(recent, earlier)) {
            assertThat(coordinator.redis().redis().hgetall(key.apply(task))).containsEntry("cancelled", "1")
                    .containsEntry("status", "cancelled");
            assertThat(coordinator.redis().redis().pttl(key.apply(task))).isPositive();
        }
        assertThat(coordinator.redis().redis().hget(key.apply(ancient), "cancelled")).as("beyond the live state's lifetime").isNull();
        assertThat(coordinator.redis().redis().hget(key.apply(open), "cancelled")).isNull();
        assertThat(store.find("acme", open.id()).orElseThrow().status()).isEqualTo(dev.kage.task.TaskStatus.QUEUED);
    }

    @Test
    void aReplayedJobThatRedisLostIsEnqueuedAgainAsItsReplayedAttempt() throws Exception {
        // A poison job's first attempt failed (its row written), an operator replayed it as attempt 2 (task reopened),
        // and Redis lost that entry with its last writes. The failed row of attempt 1 must not count the job as done.
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var task = queuedTask("replayed then lost", "replay-lost");
        String id = task.id().toString();
        String jobId = dev.kage.task.JobMessage.jobId(id, "replay-lost");
        store.insert(task);
        store.markAllEnqueued(List.of(task.id()));
        store.recordOutcome(new dev.kage.task.ResultRecord(task.id(), jobId, "replay-lost", dev.kage.task.JobStatus.FAILED,
                "delivered 5 times without finishing", 0, 0, 0, 0, java.math.BigDecimal.ZERO, "agent", null, 5, null, null, null,
                null, "w", 1, null), List.of());
        assertThat(store.reopen(task.id(), jobId, 2)).isTrue();
        assertThat(store.find("acme", task.id()).orElseThrow().status()).isEqualTo(dev.kage.task.TaskStatus.RUNNING);
        store.markVerified(List.of(task.id()), java.util.Map.of(jobId, 2)); // as the replay does once its attempt is in Redis

        // The coordinator's own reconciler may make its first pass at the same time: then this call finds nothing to do.
        assertThat(service.requeueLost()).isBetween(0, 1);
        String stream = coordinator.redis().keys().jobStream("replay-lost", Priority.NORMAL);
        java.util.function.Supplier<List<String>> attempts = () -> coordinator.redis().redis()
                .xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .filter(m -> id.equals(m.getBody().get("task_id"))).map(m -> m.getBody().get("attempt")).toList();
        assertThat(attempts.get()).as("enqueued again, as the replayed attempt").containsExactly("2");
        assertThat(service.requeueLost()).as("once").isZero();

        // Once attempt 2 has its row, the job is done and nothing is added, marker or not.
        store.recordOutcome(new dev.kage.task.ResultRecord(task.id(), jobId, "replay-lost", dev.kage.task.JobStatus.COMPLETED,
                "ok", 1, 1, 0, 0, new java.math.BigDecimal("0.000001"), "agent", "m", 5, 0, null, null, null, "w", 2, null), List.of());
        coordinator.redis().redis().del(coordinator.redis().keys().enqueued("replay-lost", jobId, 2));
        assertThat(service.requeueLost()).isZero();
        assertThat(attempts.get()).containsExactly("2");
    }

    @Test
    void aFinishedJobWhoseMarkerItsWorkerDeletedIsNotEnqueuedAgain() throws Exception {
        // A task of two jobs as the worker leaves it after one finished: the result row committed, then the entry
        // acknowledged and its enqueue-once marker deleted. The other job waits in its stream (agent "done-half").
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var queue = coordinator.context().getBean(dev.kage.queue.JobQueue.class);
        var task = queuedTask("half done", "done-half", "done-other");
        store.insert(task);
        store.markAllEnqueued(List.of(task.id()));
        String id = task.id().toString();
        var finished = new dev.kage.task.JobMessage(dev.kage.task.JobMessage.jobId(id, "done-half"), id, "acme", "done-half",
                Priority.NORMAL, task.description(), "", "main", 60, 1000, 1);
        var waiting = new dev.kage.task.JobMessage(dev.kage.task.JobMessage.jobId(id, "done-other"), id, "acme", "done-other",
                Priority.NORMAL, task.description(), "", "main", 60, 1000, 1);
        assertThat(queue.enqueue(waiting)).isPresent();
        store.recordOutcome(new dev.kage.task.ResultRecord(task.id(), finished.jobId(), "done-half", dev.kage.task.JobStatus.COMPLETED,
                "ok", 1, 1, 0, 0, new java.math.BigDecimal("0.000001"), "agent", "m", 5, 0, null, null, null, "w", 1, null), List.of());
        assertThat(queue.wasEnqueued(finished)).as("no marker, as its worker left it").isFalse();

        assertThat(service.requeueLost()).as("neither the finished job nor the one still queued").isZero();
        String stream = coordinator.redis().keys().jobStream("done-half", Priority.NORMAL);
        assertThat(coordinator.redis().redis().exists(stream)).isZero();
        assertThat(store.find("acme", task.id()).orElseThrow().status()).isEqualTo(dev.kage.task.TaskStatus.RUNNING);
    }

    @Test
    void aTaskRedisRefusesToEnqueueHoldsBackNeitherTheReconcilerNorTheRequeueOfLostJobs() throws Exception {
        // One agent's stream key was clobbered (a string): Redis answers WRONGTYPE for its jobs, and only for them.
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var redis = coordinator.redis().redis();
        String clobbered = coordinator.redis().keys().jobStream("clobbered", Priority.NORMAL);
        redis.set(clobbered, "not a stream");
        List<UUID> made = new ArrayList<>();
        try {
            var refused = queuedTask("its agent's stream is broken", "clobbered");
            var behind = queuedTask("behind it", "behind-clobbered");
            made.addAll(List.of(refused.id(), behind.id()));
            store.insert(refused);
            store.insert(behind);
            database.jdbi().useHandle(h -> {
                h.execute("UPDATE tasks SET created_at = now() - interval '2 minutes' WHERE id = ?", refused.id());
                h.execute("UPDATE tasks SET created_at = now() - interval '1 minute' WHERE id = ?", behind.id());
            });
            service.reconcile();
            String behindStream = coordinator.redis().keys().jobStream("behind-clobbered", Priority.NORMAL);
            assertThat(redis.xlen(behindStream)).as("the task after the refused one is enqueued").isEqualTo(1);

            // After a Redis restart: jobs confirmed once and lost since. The refused one is logged; the others go in.
            var lostRefused = queuedTask("lost, its agent's stream broken", "clobbered");
            var lostBehind = queuedTask("lost behind it", "lost-behind-clobbered");
            for (var task : List.of(lostRefused, lostBehind)) {
                store.insert(task);
                store.markAllEnqueued(List.of(task.id()));
                made.add(task.id());
            }
            List<dev.kage.task.JobMessage> refusedJobs = new ArrayList<>();
            service.requeueLost(refusedJobs);
            assertThat(redis.xlen(coordinator.redis().keys().jobStream("lost-behind-clobbered", Priority.NORMAL))).isEqualTo(1);
            assertThat(refusedJobs).extracting(dev.kage.task.JobMessage::taskId).containsExactly(lostRefused.id().toString());
            // Refused again while the key is damaged; enqueued once an operator has mended it.
            assertThat(service.requeueRefused(refusedJobs)).isZero();
            assertThat(refusedJobs).hasSize(1);
            redis.del(clobbered);
            assertThat(service.requeueRefused(refusedJobs)).isEqualTo(1);
            assertThat(refusedJobs).isEmpty();
            assertThat(redis.xlen(clobbered)).isEqualTo(1);
        } finally {
            // Ended, so that this class's other tests (one coordinator, one schema) find none of them to requeue.
            database.jdbi().useHandle(h -> h.createUpdate("UPDATE tasks SET status = 'cancelled' WHERE id = ANY(:ids)")
                    .bindArray("ids", UUID.class, made).execute());
            redis.del(clobbered);
        }
    }

    @Test
    void aBatchWhoseJobsRedisRefusedIsHandedBackByItsOutboxRowAndEnqueuedOnceRedisTakesThem() throws Exception {
        // demo's low-priority stream key is clobbered (a string): Redis refuses that job of the batch, and takes the other.
        Database database = coordinator.context().getBean(Database.class);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var redis = coordinator.redis().redis();
        String clobbered = coordinator.redis().keys().jobStream("demo", Priority.LOW);
        String normal = coordinator.redis().keys().jobStream("demo", Priority.NORMAL);
        redis.del(clobbered);
        redis.set(clobbered, "not a stream");
        List<UUID> ids = new ArrayList<>();
        try {
            HttpResponse<String> accepted = post("/api/v1/tasks:batch", "acme-key-123", """
                    {"tasks": [{"description": "taken at once", "cli_assignments": [{"cli_name": "demo"}]},
                    {"description": "refused at first", "priority": "low", "cli_assignments": [{"cli_name": "demo"}]}]}""");
            assertThat(accepted.statusCode()).as("the rows are committed: accepted").isEqualTo(202);
            JSON.readTree(accepted.body()).get("tasks").forEach(t -> ids.add(UUID.fromString(t.get("task_id").asText())));
            // One script call of the batch relay enqueues both (up to 100 jobs of an agent a call): it stops at the refused
            // job, after the other.
            UUID taken = ids.get(0);
            UUID refused = ids.get(1);
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3)).until(() -> jobsOf(normal, taken) == 1);
            // Not confirmed, so its outbox row stays.
            org.awaitility.Awaitility.await().during(java.time.Duration.ofMillis(500)).atMost(java.time.Duration.ofSeconds(2))
                    .until(() -> outboxRowsOf(database, ids) == 1);

            // Older than the reconciler's 5 s: handed back, the task Redis took is confirmed, the refused one stays open.
            database.jdbi().useHandle(h -> {
                h.createUpdate("UPDATE enqueue_outbox SET created_at = now() - interval '1 minute' WHERE task_ids && :ids")
                        .bindArray("ids", UUID.class, ids).execute();
                h.createUpdate("UPDATE tasks SET created_at = now() - interval '1 minute' WHERE id = ANY(:ids)")
                        .bindArray("ids", UUID.class, ids).execute();
            });
            service.reconcile();
            assertThat(outboxRowsOf(database, ids)).isZero();
            assertThat(jobsOf(normal, taken)).as("not added a second time").isEqualTo(1);
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3)).until(() -> enqueuedMark(database, taken));
            assertThat(enqueuedMark(database, refused)).isFalse();

            redis.del(clobbered);
            // (The scheduled pass may run beside these calls: what is asserted is what Redis and Postgres hold after.)
            service.reconcile();
            assertThat(jobsOf(clobbered, refused)).isEqualTo(1);
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3)).until(() -> enqueuedMark(database, refused));
        } finally {
            database.jdbi().useHandle(h -> h.createUpdate("UPDATE tasks SET status = 'cancelled' WHERE id = ANY(:ids)")
                    .bindArray("ids", UUID.class, ids).execute());
            if ("string".equals(redis.type(clobbered))) {
                redis.del(clobbered);
            }
        }
    }

    @Test
    void aReconcilerPassGoesThroughMoreUnconfirmedTasksThanOnePage() throws Exception {
        // A coordinator that died with many batches recorded and none of their jobs in Redis (150 small batches, 1,200
        // tasks): one pass hands back every outbox row and enqueues every task, not a page of them every few seconds.
        Database database = coordinator.context().getBean(Database.class);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        TaskStore store = new TaskStore(database);
        List<dev.kage.task.TaskRecord> orphans = new ArrayList<>();
        for (int i = 0; i < 1_200; i++) {
            orphans.add(queuedTask("orphan " + i, "paged"));
        }
        List<UUID> ids = orphans.stream().map(dev.kage.task.TaskRecord::id).toList();
        try {
            for (int from = 0; from < orphans.size(); from += 8) {
                store.insertAll(orphans.subList(from, from + 8), UUID.randomUUID());
            }
            database.jdbi().useHandle(h -> {
                h.createUpdate("UPDATE tasks SET created_at = now() - interval '1 minute' WHERE id = ANY(:ids)")
                        .bindArray("ids", UUID.class, ids).execute();
                h.createUpdate("UPDATE enqueue_outbox SET created_at = now() - interval '1 minute' WHERE task_ids && :ids")
                        .bindArray("ids", UUID.class, ids).execute();
            });
            service.reconcile();
            assertThat(redis().xlen(coordinator.redis().keys().jobStream("paged", Priority.NORMAL))).isEqualTo(1_200);
            assertThat(outboxRowsOf(database, ids)).isZero();
        } finally {
            database.jdbi().useHandle(h -> h.createUpdate("UPDATE tasks SET status = 'cancelled' WHERE id = ANY(:ids)")
                    .bindArray("ids", UUID.class, ids).execute());
        }
    }

    private io.lettuce.core.api.sync.RedisCommands<String, String> redis() {
        return coordinator.redis().redis();
    }

    private long jobsOf(String stream, UUID task) {
        return redis().xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .filter(m -> task.toString().equals(m.getBody().get("task_id"))).count();
    }

    private static boolean enqueuedMark(Database database, UUID task) {
        return database.jdbi().withHandle(h -> h.createQuery("SELECT enqueued_at IS NOT NULL FROM tasks WHERE id = :id")
                .bind("id", task).mapTo(Boolean.class).one());
    }

    private static long outboxRowsOf(Database database, List<UUID> tasks) {
        return database.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM enqueue_outbox WHERE task_ids && :ids")
                .bindArray("ids", UUID.class, tasks).mapTo(Long.class).one());
    }

    @Test
    void anUnconfirmedTaskWhoseJobRanMeanwhileIsMarkedNotEnqueuedAgain() throws Exception {
        // The reconciler read the task as queued and unconfirmed (its coordinator died before marking the row); since
        // then a worker ran its job: result row committed, enqueue-once marker deleted (agent "ran-meanwhile").
        Database database = coordinator.context().getBean(Database.class);
        TaskStore store = new TaskStore(database);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        var task = queuedTask("ran meanwhile", "ran-meanwhile");
        store.insert(task);
        store.recordOutcome(new dev.kage.task.ResultRecord(task.id(), dev.kage.task.JobMessage.jobId(task.id().toString(),
                "ran-meanwhile"), "ran-meanwhile", dev.kage.task.JobStatus.COMPLETED, "ok", 1, 1, 0, 0,
                new java.math.BigDecimal("0.000001"), "agent", "m", 5, 0, null, null, null, "w", 1, null), List.of());
        // As the reconciler's page read it, before the job ran.
        database.jdbi().useHandle(h -> h.execute(
                "UPDATE tasks SET status = 'queued', created_at = now() - interval '1 minute' WHERE id = ?", task.id()));

        service.reconcile();

        String stream = coordinator.redis().keys().jobStream("ran-meanwhile", Priority.NORMAL);
        assertThat(coordinator.redis().redis().exists(stream)).as("a job that ran is not added again").isZero();
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10)).until(() ->
                database.jdbi().withHandle(h -> h.createQuery("SELECT enqueued_at IS NOT NULL FROM tasks WHERE id = :id")
                        .bind("id", task.id()).mapTo(Boolean.class).one()));
    }

    @Test
    void submittedTasksAreMarkedEnqueuedInBatchesAndNoneIsLeftUnmarked() throws Exception {
        // Marks are written together every 100 ms (one UPDATE for many submits), not in the submit's own transaction.
        List<UUID> ids = new ArrayList<>();
        for (int i = 0; i < 30; i++) {
            HttpResponse<String> response = submit("acme-key-123", null, BODY);
            assertThat(response.statusCode()).as(response.body()).isEqualTo(202);
            ids.add(UUID.fromString(JSON.readTree(response.body()).get("task_id").asText()));
        }
        Database database = coordinator.context().getBean(Database.class);
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10)).until(() ->
                database.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM tasks WHERE id = ANY(:ids) AND enqueued_at IS NOT NULL")
                        .bindArray("ids", UUID.class, ids).mapTo(Long.class).one()) == ids.size());
        // and the writer has nothing left over
        assertThat(coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class).flushEnqueuedMarks()).isZero();
    }

    @Test
    void aBatchIsAcceptedWholeOrRefusedWhole() throws Exception {
        String stream = coordinator.redis().keys().jobStream("demo", Priority.HIGH);
        StringBuilder good = new StringBuilder("{\"tasks\": [");
        for (int i = 0; i < 50; i++) {
            good.append(i == 0 ? "" : ",").append("{\"description\": \"batch ").append(i)
                    .append("\", \"priority\": \"high\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        }
        good.append("]}");
        long before = coordinator.redis().redis().exists(stream) == 1 ? coordinator.redis().redis().xlen(stream) : 0;
        HttpResponse<String> accepted = post("/api/v1/tasks:batch", "acme-key-123", good.toString());
        assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
        var tasks = JSON.readTree(accepted.body()).get("tasks");
        assertThat(tasks).hasSize(50);
        // Answered once the rows are committed; the batch relay adds the jobs moments later.
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3))
                .until(() -> coordinator.redis().redis().xlen(stream) == before + 50);
        String first = tasks.get(0).get("task_id").asText();
        assertThat(coordinator.get("/api/v1/tasks/" + first, "acme-key-123").statusCode()).isEqualTo(200);
        tasks.forEach(t -> assertThat(t.get("ignored_fields")).as("no unknown field").isEmpty());
        // The rows are inserted marked, with an outbox row naming them; the flusher (every 100 ms) deletes that row once
        // the jobs are in Redis: within 3 s, before the reconciler would hand it back (rows older than 5 s).
        List<UUID> ids = new ArrayList<>();
        tasks.forEach(t -> ids.add(UUID.fromString(t.get("task_id").asText())));
        // Version 7 ids, counting up in the order sent (as Postgres sorts them: by their text).
        assertThat(ids).allSatisfy(id -> assertThat(id.version()).isEqualTo(7));
        assertThat(ids.stream().map(UUID::toString).toList()).isSortedAccordingTo(String::compareTo);
        Database database = coordinator.context().getBean(Database.class);
        long marked = database.jdbi().withHandle(h -> h.createQuery(
                "SELECT count(*) FROM tasks WHERE id = ANY(:ids) AND enqueued_at IS NOT NULL")
                .bindArray("ids", UUID.class, ids).mapTo(Long.class).one());
        assertThat(marked).isEqualTo(ids.size());
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3)).until(() -> outboxRowsOf(database, ids) == 0);

        String bad = good.toString().replace("batch 3\", \"priority\": \"high\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]",
                "batch 3\", \"priority\": \"high\", \"cli_assignments\": [{\"cli_name\": \"nope\"}]");
        HttpResponse<String> refused = post("/api/v1/tasks:batch", "acme-key-123", bad);
        assertThat(refused.statusCode()).isEqualTo(400);
        assertThat(JSON.readTree(refused.body()).get("errors").get(0).get("field").asText()).isEqualTo("tasks[3].cli_assignments[0].cli_name");
        assertThat(coordinator.redis().redis().xlen(stream)).as("no job of a refused batch").isEqualTo(before + 50);
        assertThat(post("/api/v1/tasks:batch", "acme-key-123", "{\"tasks\": []}").statusCode()).isEqualTo(400);

        // What a batch cannot honour is refused, not dropped: a batch-wide field, and a malformed Idempotency-Key.
        HttpResponse<String> batchWide = post("/api/v1/tasks:batch", "acme-key-123",
                good.toString().replaceFirst("\\{\"tasks\": ", "{\"priority\": \"low\", \"tasks\": "));
        assertThat(batchWide.statusCode()).as(batchWide.body()).isEqualTo(400);
        assertThat(JSON.readTree(batchWide.body()).get("errors").get(0).get("field").asText()).isEqualTo("priority");
        HttpResponse<String> badKey = postBatch("acme-key-123", "has space", good.toString());
        assertThat(badKey.statusCode()).as(badKey.body()).isEqualTo(400);
        assertThat(JSON.readTree(badKey.body()).get("errors").get(0).get("field").asText()).isEqualTo("Idempotency-Key");
        assertThat(coordinator.redis().redis().xlen(stream)).as("no job of a refused batch").isEqualTo(before + 50);
    }

    @Test
    void concurrentBatchesReachRedisOnceEachAndInTheOrderEachClientSentThem() throws Exception {
        // 6 clients, 5 batches each, one after another: more than the relay holds at once (4), so requests wait for room.
        String stream = coordinator.redis().keys().jobStream("demo", Priority.LOW);
        String run = UUID.randomUUID().toString().substring(0, 8);
        int clients = 6;
        int batches = 5;
        int size = 40;
        List<List<List<UUID>>> sent = new ArrayList<>();
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        try {
            List<Future<List<List<UUID>>>> each = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                int client = c;
                each.add(pool.submit(() -> {
                    List<List<UUID>> mine = new ArrayList<>();
                    for (int b = 0; b < batches; b++) {
                        HttpResponse<String> accepted = post("/api/v1/tasks:batch", "acme-key-123",
                                batchOf(size, "relay " + run + " client " + client + " batch " + b));
                        assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
                        mine.add(taskIds(accepted).stream().map(UUID::fromString).toList());
                    }
                    return mine;
                }));
            }
            for (Future<List<List<UUID>>> client : each) {
                sent.add(client.get());
            }
        } finally {
            pool.shutdownNow();
        }
        List<UUID> all = sent.stream().flatMap(List::stream).flatMap(List::stream).toList();
        assertThat(all).hasSize(clients * batches * size).doesNotHaveDuplicates();

        java.util.Set<String> wanted = new java.util.HashSet<>(all.stream().map(UUID::toString).toList());
        java.util.Map<String, List<Integer>> positions = new java.util.HashMap<>();
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10)).until(() -> {
            positions.clear();
            List<io.lettuce.core.StreamMessage<String, String>> entries = redis().xrange(stream, io.lettuce.core.Range.create("-", "+"));
            for (int i = 0; i < entries.size(); i++) {
                String task = entries.get(i).getBody().get("task_id");
                if (wanted.contains(task)) {
                    positions.computeIfAbsent(task, k -> new ArrayList<>()).add(i);
                }
            }
            return positions.size() == wanted.size();
        });
        assertThat(positions.values()).as("each task's job in its stream once").allSatisfy(p -> assertThat(p).hasSize(1));
        for (List<List<UUID>> client : sent) {
            for (int b = 1; b < client.size(); b++) {
                int lastOfEarlier = client.get(b - 1).stream().mapToInt(id -> positions.get(id.toString()).getFirst()).max().orElseThrow();
                int firstOfLater = client.get(b).stream().mapToInt(id -> positions.get(id.toString()).getFirst()).min().orElseThrow();
                assertThat(lastOfEarlier).as("a client's batch %d is in Redis before its batch %d", b - 1, b).isLessThan(firstOfLater);
            }
        }
        Database database = coordinator.context().getBean(Database.class);
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3)).until(() -> outboxRowsOf(database, all) == 0);
        cancelAll(database, all);
    }

    @Test
    void aCoordinatorStoppedWhileItsRelayWaitsForRedisStillEnqueuesEveryBatchItAccepted() throws Exception {
        // Redis stalls (a proxy holds every byte): the batches are answered (their rows are committed) while the relay
        // waits with them. The coordinator is then told to stop, and Redis comes back once it is closing: the relay finishes
        // them and their outbox rows are deleted before the coordinator's connections close, so no accepted batch waits
        // for another coordinator's reconciler.
        try (dev.kage.testing.TcpProxy proxy = redisProxy()) {
            TestCoordinator stopping = behind(proxy);
            try {
                String stream = stopping.redis().keys().jobStream("demo", Priority.LOW);
                List<UUID> ids = flowingBatch(stopping, stream, 10);

                proxy.stall();
                for (int b = 0; b < dev.kage.coordinator.task.TaskService.RELAY_BATCHES; b++) {
                    HttpResponse<String> accepted = stopping.send("POST", "/api/v1/tasks:batch", "acme-key-123",
                            batchOf(100, "stalled " + b));
                    assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
                    taskIds(accepted).forEach(id -> ids.add(UUID.fromString(id)));
                }
                assertThat(stopping.redis().redis().xlen(stream)).as("the relay holds them while Redis stalls").isEqualTo(10);
                var service = stopping.context().getBean(dev.kage.coordinator.task.TaskService.class);
                Thread resume = Thread.ofVirtual().start(() -> {
                    // Redis comes back only once the coordinator is closing its relay: what it held is drained then.
                    org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(service::closing);
                    proxy.resume();
                });
                stopping.stop();
                resume.join();

                java.util.Map<String, Long> jobs = jobsPerTask(stopping, stream);
                assertThat(jobs.size()).as("tasks with a job in the stream").isEqualTo(ids.size());
                assertThat(ids).allSatisfy(id -> assertThat(jobs.get(id.toString())).as("jobs of %s", id).isEqualTo(1L));
                try (Database database = Database.open(dev.kage.config.DatabaseUrl.parse("DATABASE_URL",
                        dev.kage.testing.TestServices.databaseUrl()), stopping.schema(), "drain-check", 1)) {
                    assertThat(outboxRowsOf(database, ids)).as("outbox rows left to a reconciler").isZero();
                }
            } finally {
                proxy.resume();
                stopping.close();
            }
        }
    }

    @Test
    void aBatchSubmitWaitsForTheRelayOnlySoLongWhileRedisStallsAndTheReconcilerEnqueuesWhatItLeft() throws Exception {
        // Redis stalls: the relay's first batch waits out Redis's command timeout (10 s) and the relay fills up. Later
        // batches wait for room only so long, are answered all the same (their rows are committed), and are left to the
        // reconciler, which enqueues every one of them once Redis answers.
        try (dev.kage.testing.TcpProxy proxy = redisProxy()) {
            TestCoordinator stalled = behind(proxy);
            try {
                String stream = stalled.redis().keys().jobStream("demo", Priority.LOW);
                List<UUID> ids = flowingBatch(stalled, stream, 5);

                proxy.stall();
                int batches = dev.kage.coordinator.task.TaskService.RELAY_BATCHES + 3;
                for (int b = 0; b < batches; b++) {
                    // A client's timeout, well under what the relay takes to give up on one stalled batch: a request that
                    // waited for room until then would fail here.
                    HttpResponse<String> accepted = stalled.http().send(HttpRequest.newBuilder(stalled.uri("/api/v1/tasks:batch"))
                            .header("X-API-Key", "acme-key-123").header("Content-Type", "application/json")
                            .timeout(java.time.Duration.ofSeconds(8))
                            .POST(HttpRequest.BodyPublishers.ofString(batchOf(20, "stalled " + b))).build(),
                            HttpResponse.BodyHandlers.ofString());
                    assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
                    taskIds(accepted).forEach(id -> ids.add(UUID.fromString(id)));
                }
                proxy.resume();

                // Their outbox rows, once older than 5 s, are handed back by the reconciler, which enqueues the tasks.
                Database database = stalled.context().getBean(Database.class);
                var service = stalled.context().getBean(dev.kage.coordinator.task.TaskService.class);
                org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(60)).pollInterval(java.time.Duration.ofMillis(500))
                        .until(() -> {
                            database.jdbi().useHandle(h -> h.createUpdate(
                                    "UPDATE enqueue_outbox SET created_at = now() - interval '1 minute' WHERE task_ids && :ids")
                                    .bindArray("ids", UUID.class, ids).execute());
                            service.reconcile();
                            java.util.Set<String> queued = stalled.redis().redis().xrange(stream, io.lettuce.core.Range.create("-", "+"))
                                    .stream().map(m -> m.getBody().get("task_id")).collect(java.util.stream.Collectors.toSet());
                            return ids.stream().allMatch(id -> queued.contains(id.toString()));
                        });
                java.util.Map<String, Long> jobs = jobsPerTask(stalled, stream);
                assertThat(ids).allSatisfy(id -> assertThat(jobs.get(id.toString())).as("jobs of %s", id).isEqualTo(1L));
            } finally {
                proxy.resume();
                stalled.close();
            }
        }
    }

    /** A proxy in front of the tests' Redis, to stall it. */
    private static dev.kage.testing.TcpProxy redisProxy() {
        java.net.URI redis = java.net.URI.create(dev.kage.testing.TestServices.redisUrl());
        return dev.kage.testing.TcpProxy.start(redis.getHost(), redis.getPort() > 0 ? redis.getPort() : 6379);
    }

    /** A coordinator of its own (namespace and schema) that reaches Redis through {@code proxy}. */
    private static TestCoordinator behind(dev.kage.testing.TcpProxy proxy) {
        return new TestCoordinator(dev.kage.testing.TestServices.newSchema(), "acme:acme-key-123", java.util.Map.of("REDIS_URL",
                dev.kage.testing.TcpProxy.redirectRedisUrl(dev.kage.testing.TestServices.redisUrl(), proxy)));
    }

    /**
     * A first batch of {@code count} low-priority tasks through a flowing Redis, its jobs awaited in {@code stream} (empty
     * before): every connection is open and every script loaded before a test stalls Redis.
     */
    private static List<UUID> flowingBatch(TestCoordinator target, String stream, int count) throws Exception {
        HttpResponse<String> first = target.send("POST", "/api/v1/tasks:batch", "acme-key-123", batchOf(count, "flowing"));
        assertThat(first.statusCode()).as(first.body()).isEqualTo(202);
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3))
                .until(() -> target.redis().redis().exists(stream) == 1 && target.redis().redis().xlen(stream) == count);
        return new ArrayList<>(taskIds(first).stream().map(UUID::fromString).toList());
    }

    /** The number of entries of each task in {@code stream}, by task id. */
    private static java.util.Map<String, Long> jobsPerTask(TestCoordinator target, String stream) {
        return target.redis().redis().xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .collect(java.util.stream.Collectors.groupingBy(m -> m.getBody().get("task_id"), java.util.stream.Collectors.counting()));
    }

    private static void cancelAll(Database database, List<UUID> ids) {
        // Out of the way of the tests that follow (and of the reconciler): ended tasks are not checked again.
        database.jdbi().useHandle(h -> h.createUpdate("UPDATE tasks SET status = 'cancelled' WHERE id = ANY(:ids)")
                .bindArray("ids", UUID.class, ids).execute());
    }

    @Test
    void concurrentRepeatsOfAKeyedBatchCreateItsTasksOnceAndInOrder() throws Exception {
        // A client whose batch timed out sends it again, maybe while the first is still being recorded.
        String key = "import-" + UUID.randomUUID();
        String batch = batchOf(20, "keyed " + key);
        String stream = coordinator.redis().keys().jobStream("demo", Priority.LOW);
        ExecutorService pool = Executors.newFixedThreadPool(8);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<HttpResponse<String>>> responses = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            responses.add(pool.submit(() -> {
                start.await();
                return postBatch("acme-key-123", key, batch);
            }));
        }
        start.countDown();
        List<List<String>> answers = new ArrayList<>();
        long replayed = 0;
        for (Future<HttpResponse<String>> response : responses) {
            HttpResponse<String> r = response.get();
            assertThat(r.statusCode()).as(r.body()).isEqualTo(202);
            answers.add(taskIds(r));
            replayed += r.headers().firstValue("Idempotent-Replayed").orElse("").equals("true") ? 1 : 0;
        }
        pool.shutdown();
        List<String> ids = answers.getFirst();
        assertThat(ids).hasSize(20).doesNotHaveDuplicates();
        assertThat(answers).as("every answer names the same tasks in the same order").containsOnly(ids);
        assertThat(replayed).isEqualTo(7);
        for (int i = 0; i < 20; i++) {
            JsonNode task = JSON.readTree(coordinator.get("/api/v1/tasks/" + ids.get(i), "acme-key-123").body());
            assertThat(task.get("description").asText()).as("task %d is the batch's task %d", i, i).isEqualTo("keyed " + key + " " + i);
        }
        Database database = coordinator.context().getBean(Database.class);
        long recorded = database.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM tasks WHERE description LIKE :d")
                .bind("d", "keyed " + key + " %").mapTo(Long.class).one());
        assertThat(recorded).as("tasks in Postgres").isEqualTo(20);
        // Answered once committed; the batch relay adds the jobs moments later.
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(3)).until(() -> coordinator.redis().redis()
                .xrange(stream, io.lettuce.core.Range.create("-", "+")).stream()
                .filter(m -> ids.contains(m.getBody().get("task_id"))).count() == 20);

        // A later repeat, once the tasks moved on, still finds them; another tenant's same key is its own batch.
        HttpResponse<String> again = postBatch("acme-key-123", key, batch);
        assertThat(again.headers().firstValue("Idempotent-Replayed")).hasValue("true");
        assertThat(taskIds(again)).isEqualTo(ids);
        HttpResponse<String> otherTenant = postBatch("globex-key-456", key, batch);
        assertThat(otherTenant.statusCode()).as(otherTenant.body()).isEqualTo(202);
        assertThat(otherTenant.headers().firstValue("Idempotent-Replayed")).hasValue("false");
        assertThat(taskIds(otherTenant)).as("keys are per tenant").doesNotContainAnyElementsOf(ids);
        // Nor does a single submit with the batch's key find one of its tasks.
        HttpResponse<String> single = submit("acme-key-123", key, BODY);
        assertThat(single.statusCode()).isEqualTo(202);
        assertThat(single.headers().firstValue("Idempotent-Replayed")).hasValue("false");
        assertThat(ids).doesNotContain(JSON.readTree(single.body()).get("task_id").asText());
    }

    @Test
    void aBatchKeyReusedForOtherTasksIs422AndCreatesNothing() throws Exception {
        String key = "import-" + UUID.randomUUID();
        HttpResponse<String> first = postBatch("acme-key-123", key, batchOf(5, "first " + key));
        assertThat(first.statusCode()).as(first.body()).isEqualTo(202);
        Database database = coordinator.context().getBean(Database.class);
        java.util.function.Supplier<Long> tasksOfThisTest = () -> database.jdbi().withHandle(h -> h.createQuery(
                "SELECT count(*) FROM tasks WHERE description LIKE :d").bind("d", "% " + key + " %").mapTo(Long.class).one());
        assertThat(tasksOfThisTest.get()).isEqualTo(5);
        // Other descriptions; fewer tasks (its keys all taken, by another body); more tasks (some keys free: the five
        // taken ones must not be returned as if they were this batch's, nor the free ones recorded).
        for (String other : List.of(batchOf(5, "second " + key), batchOf(3, "first " + key), batchOf(8, "first " + key))) {
            HttpResponse<String> conflict = postBatch("acme-key-123", key, other);
            assertThat(conflict.statusCode()).as(conflict.body()).isEqualTo(422);
            assertThat(JSON.readTree(conflict.body()).get("errors").get(0).get("field").asText()).isEqualTo("Idempotency-Key");
        }
        assertThat(tasksOfThisTest.get()).as("no task of a refused batch").isEqualTo(5);
        HttpResponse<String> repeat = postBatch("acme-key-123", key, batchOf(5, "first " + key));
        assertThat(taskIds(repeat)).isEqualTo(taskIds(first));
    }

    @Test
    void aBatchReportsEachTasksUnknownFieldsAsTheSingleSubmitDoes() throws Exception {
        // A client that misspells a field (here "prompt" for "description" beside it, "max_token") learns it had no effect.
        HttpResponse<String> accepted = post("/api/v1/tasks:batch", "acme-key-123", """
                {"tasks": [{"description": "plain", "cli_assignments": [{"cli_name": "demo"}]},
                           {"description": "typos", "prompt": "x", "max_token": 5,
                            "cli_assignments": [{"cli_name": "demo", "timout": 60}]},
                           {"description": "plain again", "cli_assignments": [{"cli_name": "demo"}]}]}""");
        assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(202);
        var tasks = JSON.readTree(accepted.body()).get("tasks");
        assertThat(tasks).hasSize(3);
        assertThat(tasks.get(0).get("ignored_fields")).isEmpty();
        assertThat(tasks.get(1).get("ignored_fields")).extracting(com.fasterxml.jackson.databind.JsonNode::asText)
                .containsExactly("prompt", "max_token", "cli_assignments[0].timout");
        assertThat(tasks.get(2).get("ignored_fields")).isEmpty();
        HttpResponse<String> single = submit("acme-key-123", null,
                "{\"description\": \"typos\", \"prompt\": \"x\", \"max_token\": 5, \"cli_assignments\": [{\"cli_name\": \"demo\", \"timout\": 60}]}");
        assertThat(JSON.readTree(single.body()).get("ignored_fields")).isEqualTo(tasks.get(1).get("ignored_fields"));
    }

    /** A batch of {@code count} low-priority demo tasks described {@code "<prefix> <i>"}. */
    private static String batchOf(int count, String prefix) {
        StringBuilder batch = new StringBuilder("{\"tasks\": [");
        for (int i = 0; i < count; i++) {
            batch.append(i == 0 ? "" : ",").append("{\"description\": \"").append(prefix).append(' ').append(i)
                    .append("\", \"priority\": \"low\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
        }
        return batch.append("]}").toString();
    }

    private static List<String> taskIds(HttpResponse<String> batchResponse) throws Exception {
        List<String> ids = new ArrayList<>();
        JSON.readTree(batchResponse.body()).get("tasks").forEach(t -> ids.add(t.get("task_id").asText()));
        return ids;
    }

    private static HttpResponse<String> postBatch(String apiKey, String idempotencyKey, String body) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/tasks:batch")).header("X-API-Key", apiKey)
                .header("Idempotency-Key", idempotencyKey).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> post(String path, String apiKey, String body) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).header("X-API-Key", apiKey)
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> submit(String apiKey, String idempotencyKey, String body) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(coordinator.uri("/api/v1/tasks")).header("X-API-Key", apiKey)
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        if (idempotencyKey != null) {
            request.header("Idempotency-Key", idempotencyKey);
        }
        return coordinator.http().send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> post(String path, String apiKey) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).header("X-API-Key", apiKey)
                .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** A queued task of tenant acme, one job per agent (60 s each), as a submit's row before its jobs reach Redis. */
    private static dev.kage.task.TaskRecord queuedTask(String description, String... agents) {
        List<dev.kage.task.Assignment> jobs = java.util.Arrays.stream(agents).map(a -> new dev.kage.task.Assignment(a, 60)).toList();
        return new dev.kage.task.TaskRecord(UUID.randomUUID(), "acme", description, dev.kage.task.TaskStatus.QUEUED,
                Priority.NORMAL, null, "main", jobs, null, 1000, java.time.Instant.now(), java.time.Instant.now(), null);
    }
}
