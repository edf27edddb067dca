package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.task.JobMessage;
import dev.kage.task.Priority;
import io.lettuce.core.Range;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The dead letters an operator works through after a poison storm: filtered by agent, replayed many at once (each
 * once), discarded; never another tenant's.
 */
class DeadLetterApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static TestCoordinator coordinator;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123,globex:globex-key-456,initech:initech-key-789,umbrella:umbrella-key-000,hooli:hooli-key-111,soylent:soylent-key-222");
    }

    @AfterAll
    static void stop() throws Exception {
        coordinator.close();
    }

    @Test
    void lettersAreListedByAgentReplayedManyAtOnceOnlyOnceAndNeverAnotherTenants() throws Exception {
        // Five of acme's demo jobs, two of its claude-code jobs and one of globex's demo jobs died, in that order.
        List<String> demo = new ArrayList<>();
        List<String> demoTasks = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            String task = submit("acme-key-123", "demo");
            demoTasks.add(task);
            demo.add(kill("acme", task, "demo"));
        }
        List<String> claude = List.of(kill("acme", submit("acme-key-123", "claude-code"), "claude-code"),
                kill("acme", submit("acme-key-123", "claude-code"), "claude-code"));
        String globex = kill("globex", submit("globex-key-456", "demo"), "demo");

        assertThat(ids(get("/api/v1/dead-letters?agent=demo", "acme-key-123"))).as("newest first")
                .containsExactly(demo.get(4), demo.get(3), demo.get(2), demo.get(1), demo.get(0));
        assertThat(ids(get("/api/v1/dead-letters?agent=claude-code", "acme-key-123"))).containsExactlyElementsOf(claude.reversed());
        assertThat(ids(get("/api/v1/dead-letters?agent=demo", "globex-key-456"))).containsExactly(globex);

        // The newest two of acme's demo letters, oldest of them first, each as a new attempt on its stream.
        HttpResponse<String> first = post("/api/v1/dead-letters/replay?agent=demo&limit=2", "acme-key-123");
        assertThat(first.statusCode()).as(first.body()).isEqualTo(202);
        JsonNode replayed = JSON.readTree(first.body()).get("replayed");
        assertThat(replayed).extracting(r -> r.get("dead_letter_id").asText()).containsExactly(demo.get(3), demo.get(4));
        assertThat(replayed).extracting(r -> r.get("task_id").asText()).containsExactly(demoTasks.get(3), demoTasks.get(4));
        assertThat(replayed).extracting(r -> r.get("attempt").asInt()).containsOnly(3);
        String stream = coordinator.redis().keys().jobStream("demo", Priority.NORMAL);
        assertThat(attemptsInStream(stream, demoTasks.get(3))).containsExactly(1, 3);

        // The rest of them; then nothing is left, and nothing ran twice.
        HttpResponse<String> rest = post("/api/v1/dead-letters/replay?agent=demo", "acme-key-123");
        assertThat(JSON.readTree(rest.body()).get("replayed")).extracting(r -> r.get("dead_letter_id").asText())
                .containsExactly(demo.get(0), demo.get(1), demo.get(2));
        assertThat(JSON.readTree(post("/api/v1/dead-letters/replay?agent=demo", "acme-key-123").body()).get("replayed")).isEmpty();
        for (String task : demoTasks) {
            assertThat(attemptsInStream(stream, task)).as("task %s", task).containsExactly(1, 3);
        }
        assertThat(ids(get("/api/v1/dead-letters", "acme-key-123"))).as("claude-code's stay").containsExactlyElementsOf(claude.reversed());
        assertThat(ids(get("/api/v1/dead-letters", "globex-key-456"))).as("another tenant's stay").containsExactly(globex);
        // A replayed task runs again: it is reopened.
        assertThat(JSON.readTree(get("/api/v1/tasks/" + demoTasks.get(0), "acme-key-123").body()).get("status").asText())
                .isIn("queued", "running");

        for (String bad : List.of("0", "1001", "ten", "")) {
            HttpResponse<String> refused = post("/api/v1/dead-letters/replay?limit=" + bad, "acme-key-123");
            assertThat(refused.statusCode()).as("limit=%s: %s", bad, refused.body()).isEqualTo(400);
            assertThat(JSON.readTree(refused.body()).get("errors").get(0).get("field").asText()).isEqualTo("limit");
        }
        HttpResponse<String> blankAgent = post("/api/v1/dead-letters/replay?agent=", "acme-key-123");
        assertThat(blankAgent.statusCode()).isEqualTo(400);
        assertThat(JSON.readTree(blankAgent.body()).get("errors").get(0).get("field").asText()).isEqualTo("agent");
        assertThat(ids(get("/api/v1/dead-letters", "acme-key-123"))).as("a refused request replays nothing").hasSize(2);
    }

    @Test
    void aDiscardedLetterIsGoneItsJobStaysFailedAndAnotherTenantCannotDiscardIt() throws Exception {
        String task = submit("acme-key-123", "demo");
        String letter = kill("acme", task, "demo");
        assertThat(delete("/api/v1/dead-letters/" + letter, "globex-key-456").statusCode()).isEqualTo(404);
        assertThat(ids(get("/api/v1/dead-letters", "acme-key-123"))).contains(letter);

        HttpResponse<String> discarded = delete("/api/v1/dead-letters/" + letter, "acme-key-123");
        assertThat(discarded.statusCode()).as(discarded.body()).isEqualTo(200);
        assertThat(JSON.readTree(discarded.body()).get("id").asText()).isEqualTo(letter);
        assertThat(JSON.readTree(discarded.body()).get("task_id").asText()).isEqualTo(task);
        assertThat(ids(get("/api/v1/dead-letters", "acme-key-123"))).doesNotContain(letter);
        assertThat(delete("/api/v1/dead-letters/" + letter, "acme-key-123").statusCode()).as("already gone").isEqualTo(404);
        assertThat(post("/api/v1/dead-letters/" + letter + "/replay", "acme-key-123").statusCode()).as("nothing to replay").isEqualTo(404);
        assertThat(delete("/api/v1/dead-letters/not-an-id", "acme-key-123").statusCode()).isEqualTo(404);
        // Operators following the event stream see it go.
        assertThat(coordinator.redis().redis().xrevrange(coordinator.redis().keys().events(), Range.create("-", "+"),
                io.lettuce.core.Limit.from(200))).anySatisfy(event -> {
                    assertThat(event.getBody()).containsEntry("type", "job.discarded").containsEntry("dead_letter_id", letter)
                            .containsEntry("task_id", task).containsEntry("tenant", "acme");
                });
    }

    @Test
    void lettersThatAreNotJobsNeverHideTheJobsBehindThemAndCanOnlyBeDiscarded() throws Exception {
        // One job died, then three entries that are not jobs (a poison entry is kept as it was) died after it.
        String task = submit("initech-key-789", "demo");
        String job = kill("initech", task, "demo");
        List<String> poison = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            poison.add(coordinator.redis().redis().xadd(coordinator.redis().keys().deadLetters(), Map.of("tenant", "initech",
                    "agent", "demo", "task_id", task, "attempt", "three", "dead_reason", "not a job: attempt")));
        }
        assertThat(ids(get("/api/v1/dead-letters", "initech-key-789"))).as("all are listed")
                .containsExactly(poison.get(2), poison.get(1), poison.get(0), job);

        // A replay of the newest two passes over what it cannot replay, instead of replaying nothing for ever.
        HttpResponse<String> replayed = post("/api/v1/dead-letters/replay?limit=2", "initech-key-789");
        assertThat(replayed.statusCode()).as(replayed.body()).isEqualTo(202);
        assertThat(JSON.readTree(replayed.body()).get("replayed")).extracting(r -> r.get("dead_letter_id").asText())
                .containsExactly(job);
        assertThat(attemptsInStream(coordinator.redis().keys().jobStream("demo", Priority.NORMAL), task)).containsExactly(1, 3);

        // Replaying one of them says why not, and leaves it; discarding it removes it.
        HttpResponse<String> refused = post("/api/v1/dead-letters/" + poison.get(0) + "/replay", "initech-key-789");
        assertThat(refused.statusCode()).as(refused.body()).isEqualTo(422);
        assertThat(JSON.readTree(refused.body()).get("error").asText()).isEqualTo("not_a_job");
        assertThat(JSON.readTree(refused.body()).get("message").asText()).contains(poison.get(0), "job_id", "discard");
        assertThat(ids(get("/api/v1/dead-letters", "initech-key-789"))).containsExactlyElementsOf(poison.reversed());
        assertThat(post("/api/v1/dead-letters/" + poison.get(0) + "/replay", "acme-key-123").statusCode())
                .as("another tenant's letter").isEqualTo(404);
        // Every field there, but no task of this fleet's: the same.
        Map<String, String> foreign = new HashMap<>(new JobMessage("x:demo", "x", "initech", "demo", Priority.NORMAL, "p", "", "main", 60, 1000, 1).toFields());
        foreign.put("dead_reason", "delivered 5 times without finishing");
        String notATask = coordinator.redis().redis().xadd(coordinator.redis().keys().deadLetters(), foreign);
        HttpResponse<String> alsoRefused = post("/api/v1/dead-letters/" + notATask + "/replay", "initech-key-789");
        assertThat(alsoRefused.statusCode()).as(alsoRefused.body()).isEqualTo(422);
        assertThat(JSON.readTree(alsoRefused.body()).get("message").asText()).contains("task_id");
        assertThat(attemptsInStream(coordinator.redis().keys().jobStream("demo", Priority.NORMAL), "x")).as("nothing enqueued").isEmpty();
        assertThat(delete("/api/v1/dead-letters/" + notATask, "initech-key-789").statusCode()).isEqualTo(200);
        assertThat(delete("/api/v1/dead-letters/" + poison.get(0), "initech-key-789").statusCode()).isEqualTo(200);
        assertThat(ids(get("/api/v1/dead-letters", "initech-key-789"))).containsExactly(poison.get(2), poison.get(1));
    }

    @Test
    void aLetterOfACancelledTaskIsNotRunAgainAndDoesNotHideTheOthers() throws Exception {
        String kept = submit("umbrella-key-000", "demo");
        String keptLetter = kill("umbrella", kept, "demo");
        String cancelled = submit("umbrella-key-000", "demo");
        String cancelledLetter = kill("umbrella", cancelled, "demo");
        HttpResponse<String> cancel = post("/api/v1/tasks/" + cancelled + "/cancel", "umbrella-key-000");
        assertThat(cancel.statusCode()).as(cancel.body()).isEqualTo(202);

        HttpResponse<String> refused = post("/api/v1/dead-letters/" + cancelledLetter + "/replay", "umbrella-key-000");
        assertThat(refused.statusCode()).as(refused.body()).isEqualTo(409);
        assertThat(JSON.readTree(refused.body()).get("error").asText()).isEqualTo("task_cancelled");
        HttpResponse<String> many = post("/api/v1/dead-letters/replay?limit=1", "umbrella-key-000");
        assertThat(JSON.readTree(many.body()).get("replayed")).extracting(r -> r.get("dead_letter_id").asText())
                .as("the newest letter is the cancelled task's: passed over").containsExactly(keptLetter);
        assertThat(attemptsInStream(coordinator.redis().keys().jobStream("demo", Priority.NORMAL), cancelled))
                .as("its first attempt only").containsExactly(1);
        assertThat(JSON.readTree(get("/api/v1/tasks/" + cancelled, "umbrella-key-000").body()).get("status").asText())
                .isEqualTo("cancelled");
        assertThat(ids(get("/api/v1/dead-letters", "umbrella-key-000"))).containsExactly(cancelledLetter);
    }

    @Test
    void aReplayWhoseRedisStepFailsLeavesItsTaskRunningAndCancellableAndTheReconcilerFinishesIt() throws Exception {
        // A failed task's job died; its replay reaches Postgres (the task reopens) but not Redis: the stream's key is
        // unusable for a moment (WRONGTYPE), as a Redis that refuses writes would be.
        var database = coordinator.context().getBean(dev.kage.store.Database.class);
        var service = coordinator.context().getBean(dev.kage.coordinator.task.TaskService.class);
        String stream = coordinator.redis().keys().jobStream("claude-code", Priority.NORMAL);
        String task = submit("hooli-key-111", "claude-code");
        String stale = submit("hooli-key-111", "claude-code");
        String letter = kill("hooli", task, "claude-code");
        String staleLetter = kill("hooli", stale, "claude-code");
        database.jdbi().useHandle(h -> h.execute("UPDATE tasks SET status = 'failed', completed_at = now() WHERE id IN (?::uuid, ?::uuid)",
                task, stale));
        java.util.function.Function<String, String> status = id -> {
            try {
                return JSON.readTree(get("/api/v1/tasks/" + id, "hooli-key-111").body()).get("status").asText();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        };
        List<Map<String, String>> entries = coordinator.redis().redis().xrange(stream, Range.create("-", "+")).stream()
                .map(m -> m.getBody()).toList();
        try {
            coordinator.redis().redis().del(stream);
            coordinator.redis().redis().set(stream, "not a stream");
            for (String dead : List.of(letter, staleLetter)) {
                HttpResponse<String> failed = post("/api/v1/dead-letters/" + dead + "/replay", "hooli-key-111");
                assertThat(failed.statusCode()).as(failed.body()).isEqualTo(503);
            }
            assertThat(status.apply(task)).as("reopened before Redis was asked: cancellable, never failed while it runs")
                    .isEqualTo("running");
            assertThat(ids(get("/api/v1/dead-letters", "hooli-key-111"))).as("the letters stay").contains(letter, staleLetter);
        } finally {
            coordinator.redis().redis().del(stream);
            entries.forEach(fields -> coordinator.redis().redis().xadd(stream, fields));
        }

        // Redis answers again: the reconciler enqueues the replayed attempts, each once.
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).untilAsserted(() -> {
            service.reconcile();
            assertThat(attemptsInStream(stream, task)).containsExactly(1, 3);
            assertThat(attemptsInStream(stream, stale)).containsExactly(1, 3);
        });
        // Replaying the letter now adds nothing and removes it.
        HttpResponse<String> again = post("/api/v1/dead-letters/" + letter + "/replay", "hooli-key-111");
        assertThat(again.statusCode()).as(again.body()).isEqualTo(202);
        assertThat(attemptsInStream(stream, task)).containsExactly(1, 3);
        // The other's attempt 3 ran (its row written, its marker gone a minute later): its letter is stale, and replaying
        // it runs nothing a second time.
        String jobId = JobMessage.jobId(stale, "claude-code");
        new dev.kage.store.TaskStore(database).recordOutcome(new dev.kage.task.ResultRecord(UUID.fromString(stale), jobId,
                "claude-code", dev.kage.task.JobStatus.COMPLETED, "ok", 1, 1, 0, 0, new java.math.BigDecimal("0.000001"), "agent",
                "m", 5, 0, null, null, null, "w", 3, null), List.of());
        coordinator.redis().redis().del(coordinator.redis().keys().enqueued("claude-code", jobId, 3));
        HttpResponse<String> stalely = post("/api/v1/dead-letters/" + staleLetter + "/replay", "hooli-key-111");
        assertThat(stalely.statusCode()).as(stalely.body()).isEqualTo(404);
        assertThat(attemptsInStream(stream, stale)).containsExactly(1, 3);
        assertThat(ids(get("/api/v1/dead-letters", "hooli-key-111"))).as("both letters are gone").isEmpty();
    }

    @Test
    void aLetterBeingDiscardedIsNotReplayedAndItsTaskIsNotReopened() throws Exception {
        // A discard took the letter's mark and then failed to remove it (a Redis blip): a replay of the letter must not
        // reopen its task, which would then stay running with nothing to run.
        String task = submit("soylent-key-222", "demo");
        String letter = kill("soylent", task, "demo");
        var database = coordinator.context().getBean(dev.kage.store.Database.class);
        database.jdbi().useHandle(h -> h.execute("UPDATE tasks SET status = 'failed', completed_at = now() WHERE id = ?::uuid", task));
        coordinator.redis().redis().set(coordinator.redis().keys().replayed("demo", letter), "discarded");

        HttpResponse<String> replay = post("/api/v1/dead-letters/" + letter + "/replay", "soylent-key-222");
        assertThat(replay.statusCode()).as(replay.body()).isEqualTo(404);
        assertThat(JSON.readTree(get("/api/v1/tasks/" + task, "soylent-key-222").body()).get("status").asText()).isEqualTo("failed");
        long replays = database.jdbi().withHandle(h -> h.createQuery("SELECT count(*) FROM job_replays WHERE task_id = ?::uuid")
                .bind(0, task).mapTo(Long.class).one());
        assertThat(replays).as("no replayed attempt recorded").isZero();
        // The discard is finished by its retry.
        assertThat(delete("/api/v1/dead-letters/" + letter, "soylent-key-222").statusCode()).isEqualTo(200);
    }

    @Test
    void aLetterLeftBehindByAFinishedReplayOrHeldByAnUnfinishedOneCanStillBeCleared() throws Exception {
        // A replay whose job was added, but which died (or timed out) before removing its letter: the letter goes with
        // the next replay of it, which adds nothing.
        String done = submit("soylent-key-222", "demo");
        String doneLetter = kill("soylent", done, "demo");
        coordinator.redis().redis().set(coordinator.redis().keys().replayed("demo", doneLetter), "1");
        assertThat(post("/api/v1/dead-letters/" + doneLetter + "/replay", "soylent-key-222").statusCode()).isEqualTo(404);
        assertThat(ids(get("/api/v1/dead-letters", "soylent-key-222"))).doesNotContain(doneLetter);

        // A replay begun and never finished holds its letter; once the task is cancelled, the replay is refused (409) and
        // the discard it points to takes the letter over.
        String held = submit("soylent-key-222", "demo");
        String heldLetter = kill("soylent", held, "demo");
        coordinator.redis().redis().set(coordinator.redis().keys().replayed("demo", heldLetter), "replaying");
        assertThat(delete("/api/v1/dead-letters/" + heldLetter, "soylent-key-222").statusCode())
                .as("a replay of it is under way").isEqualTo(404);
        assertThat(post("/api/v1/tasks/" + held + "/cancel", "soylent-key-222").statusCode()).isEqualTo(202);
        assertThat(post("/api/v1/dead-letters/" + heldLetter + "/replay", "soylent-key-222").statusCode()).isEqualTo(409);
        assertThat(delete("/api/v1/dead-letters/" + heldLetter, "soylent-key-222").statusCode()).isEqualTo(200);
        assertThat(ids(get("/api/v1/dead-letters", "soylent-key-222"))).doesNotContain(heldLetter);
    }

    @Test
    void aMisspeltOrRepeatedParameterIsRefusedNamedAndReplaysNothing() throws Exception {
        String demo = kill("soylent", submit("soylent-key-222", "demo"), "demo");
        String claude = kill("soylent", submit("soylent-key-222", "claude-code"), "claude-code");
        for (String query : List.of("agnet=demo", "limt=1", "agent=demo&agent=claude-code", "limit=1&limit=2")) {
            HttpResponse<String> refused = post("/api/v1/dead-letters/replay?" + query, "soylent-key-222");
            assertThat(refused.statusCode()).as("%s: %s", query, refused.body()).isEqualTo(400);
            String field = query.substring(0, query.indexOf('='));
            assertThat(JSON.readTree(refused.body()).get("errors").get(0).get("field").asText()).isEqualTo(field);
            HttpResponse<String> listed = get("/api/v1/dead-letters?" + query, "soylent-key-222");
            assertThat(listed.statusCode()).as("%s: %s", query, listed.body()).isEqualTo(400);
        }
        assertThat(ids(get("/api/v1/dead-letters", "soylent-key-222"))).as("nothing replayed").containsExactly(claude, demo);
        HttpResponse<String> single = post("/api/v1/dead-letters/" + demo + "/replay?agent=demo", "soylent-key-222");
        assertThat(single.statusCode()).as("a route that takes none: %s", single.body()).isEqualTo(400);
        assertThat(single.body()).contains("takes no query parameters");
        assertThat(post("/api/v1/dead-letters/replay?agent=demo", "soylent-key-222").statusCode()).isEqualTo(202);
        assertThat(ids(get("/api/v1/dead-letters", "soylent-key-222"))).containsExactly(claude);
        assertThat(get("/api/v1/dead-letters?agnet=x", "not-a-key").statusCode()).as("the key is checked first").isEqualTo(401);
    }

    /** Submits a task for one agent; its job waits in the stream (no worker here). */
    private static String submit(String apiKey, String agent) throws Exception {
        HttpResponse<String> response = coordinator.http().send(HttpRequest.newBuilder(coordinator.uri("/api/v1/tasks"))
                .header("X-API-Key", apiKey).POST(HttpRequest.BodyPublishers.ofString(
                        "{\"description\": \"poisoned " + UUID.randomUUID() + "\", \"cli_assignments\": [{\"cli_name\": \"" + agent
                                + "\"}]}")).build(), HttpResponse.BodyHandlers.ofString());
        assertThat(response.statusCode()).as(response.body()).isEqualTo(202);
        return JSON.readTree(response.body()).get("task_id").asText();
    }

    /** The dead letter a worker leaves for the task's job, as its second attempt died (the fields of a real entry). */
    private static String kill(String tenant, String taskId, String agent) {
        JobMessage job = new JobMessage(JobMessage.jobId(taskId, agent), taskId, tenant, agent, Priority.NORMAL, "poisoned", "",
                "main", 60, 1000, 2);
        Map<String, String> fields = new HashMap<>(job.toFields());
        fields.put("dead_reason", "delivered 5 times without finishing");
        fields.put("dead_from_stream", coordinator.redis().keys().jobStream(agent, Priority.NORMAL));
        fields.put("dead_from_id", "1-0");
        return coordinator.redis().redis().xadd(coordinator.redis().keys().deadLetters(), fields);
    }

    private static List<Integer> attemptsInStream(String stream, String taskId) {
        return coordinator.redis().redis().xrange(stream, Range.create("-", "+")).stream()
                .filter(m -> taskId.equals(m.getBody().get("task_id")))
                .map(m -> Integer.parseInt(m.getBody().get("attempt")))
                .sorted()
                .toList();
    }

    private static List<String> ids(HttpResponse<String> listing) throws Exception {
        assertThat(listing.statusCode()).as(listing.body()).isEqualTo(200);
        List<String> ids = new ArrayList<>();
        JSON.readTree(listing.body()).get("dead_letters").forEach(l -> ids.add(l.get("id").asText()));
        return ids;
    }

    private static HttpResponse<String> get(String path, String apiKey) throws Exception {
        return coordinator.get(path, apiKey);
    }

    private static HttpResponse<String> post(String path, String apiKey) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).header("X-API-Key", apiKey)
                .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> delete(String path, String apiKey) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).header("X-API-Key", apiKey).DELETE().build(),
                HttpResponse.BodyHandlers.ofString());
    }
}
