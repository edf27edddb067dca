package dev.kage.coordinator.events;

import static dev.kage.coordinator.api.TestCoordinator.json;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.coordinator.api.TestCoordinator;
import dev.kage.coordinator.events.SseReader.SseEvent;
import dev.kage.events.EventLog;
import dev.kage.store.TaskStore;
import dev.kage.task.TaskStatus;
import java.net.http.HttpResponse;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code GET /api/v1/tasks/{id}/events} against a live coordinator, with events published as a worker does. */
class TaskEventsApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String ACME = "acme-key-123";
    private static final String GLOBEX = "globex-key-456";
    private static final String TASK = "{\"description\": \"stream me\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
    private static final Duration PATIENCE = Duration.ofSeconds(10);

    private static TestCoordinator coordinator;
    private static EventLog events;

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("acme:acme-key-123,globex:globex-key-456", Map.of("kage.events.keep-alive", "1s"));
        events = new EventLog(coordinator.redis().keys(), coordinator.redis().redis(), Clock.systemUTC());
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @Test
    void streamsTheTasksPastThenLiveEventsAndEndsWithTheTask() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        String other = coordinator.submit(ACME, TASK);
        try (SseReader sse = open(task, ACME, null)) {
            assertThat(sse.response().statusCode()).isEqualTo(200);
            assertThat(sse.response().headers().firstValue("Content-Type")).hasValueSatisfying(
                    t -> assertThat(t).startsWith("text/event-stream"));
            await().atMost(PATIENCE).until(() -> sse.names().contains("task.submitted"));

            jobStarted(other);
            jobStarted(task);
            await().atMost(PATIENCE).until(() -> sse.names().contains("job.started"));
            assertThat(sse.ended()).isFalse();
            jobFinished(other, "completed");
            jobFinished(task, "completed");

            await().atMost(PATIENCE).until(sse::ended);
            assertThat(sse.names()).containsExactly("task.submitted", "job.started", "job.finished");
            for (SseEvent event : sse.events()) {
                JsonNode data = JSON.readTree(event.data());
                assertThat(data.get("task_id").asText()).isEqualTo(task);
                assertThat(data.get("tenant").asText()).isEqualTo("acme");
                assertThat(data.get("type").asText()).isEqualTo(event.name());
                assertThat(event.id()).matches("\\d+-\\d+");
            }
            JsonNode finished = JSON.readTree(sse.events().get(2).data());
            assertThat(finished.get("status").asText()).isEqualTo("completed");
            assertThat(finished.get("task_status").asText()).isEqualTo("completed");
            assertThat(JSON.readTree(sse.events().get(1).data()).get("worker").asText()).isEqualTo("w-1");
        }
    }

    @Test
    void aTaskThatEndedWithoutAnEventSayingSoEndsItsStreamFromPostgres() throws Exception {
        // Its last job's event carried no task status (its outcome waited in an outbox) or was lost with a restarted
        // Redis: the keep-alives ask Postgres, and the stream ends once it said so twice.
        String task = coordinator.submit(ACME, TASK);
        try (SseReader sse = open(task, ACME, null)) {
            await().atMost(PATIENCE).until(() -> sse.names().contains("task.submitted"));
            jobStarted(task);
            events.publish("job.finished", Map.of("task_id", task, "tenant", "acme", "agent", "demo", "status", "completed"));
            await().atMost(PATIENCE).until(() -> sse.names().contains("job.finished"));
            // Keep-alives (every second here) that find the task still open do not end it.
            await().during(Duration.ofMillis(2_500)).atMost(PATIENCE).until(() -> !sse.ended());
            coordinator.context().getBean(dev.kage.store.Database.class).jdbi().useHandle(h ->
                    h.execute("UPDATE tasks SET status = 'completed', completed_at = now() WHERE id = ?::uuid", task));
            await().atMost(PATIENCE).until(sse::ended);
            assertThat(sse.names()).containsExactly("task.submitted", "job.started", "job.finished", "task.ended");
            JsonNode ended = JSON.readTree(sse.events().getLast().data());
            assertThat(ended.get("task_status").asText()).isEqualTo("completed");
            assertThat(ended.get("task_id").asText()).isEqualTo(task);
        }
    }

    @Test
    void revokingAKeyEndsTheStreamsItOpened() throws Exception {
        // Revoked in Postgres, as by another coordinator (this one's cache is not told): the keep-alives ask.
        var store = coordinator.context().getBean(dev.kage.coordinator.auth.ApiKeyStore.class);
        var created = store.create("acme", "dashboard", java.util.Set.of(dev.kage.coordinator.auth.Scope.READ));
        String task = coordinator.submit(ACME, TASK);
        try (SseReader tenant = openTenant(created.key(), null); SseReader taskStream = open(task, created.key(), null)) {
            await().atMost(PATIENCE).until(() -> tenant.names().contains("stream.connected")
                    && taskStream.names().contains("task.submitted"));
            await().during(Duration.ofMillis(2_500)).atMost(PATIENCE).until(() -> !tenant.ended() && !taskStream.ended());
            assertThat(store.revoke(created.row().id())).isPresent();
            await().atMost(PATIENCE).until(() -> tenant.ended() && taskStream.ended());
            assertThat(taskStream.names()).as("ended, not by a task.ended event: the task is still queued")
                    .doesNotContain("task.ended");
        }
    }

    @Test
    void aJobThatEndsWhileAnotherRunsDoesNotEndTheStream() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        try (SseReader sse = open(task, ACME, null)) {
            await().atMost(PATIENCE).until(() -> sse.names().contains("task.submitted"));
            jobFinished(task, "running");
            events.publish("budget.warning", Map.of("task_id", task, "tenant", "acme", "agent", "demo"));
            await().atMost(PATIENCE).until(() -> sse.names().contains("budget.warning"));
            assertThat(sse.ended()).isFalse();
            events.publish("task.cancelled", Map.of("task_id", task, "tenant", "acme"));
            await().atMost(PATIENCE).until(sse::ended);
            assertThat(sse.names()).containsExactly("task.submitted", "job.finished", "budget.warning", "task.cancelled");
        }
    }

    @Test
    void lastEventIdResumesAfterThatEvent() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        jobStarted(task);
        jobFinished(task, "completed");
        String startedId;
        try (SseReader all = open(task, ACME, null)) {
            await().atMost(PATIENCE).until(all::ended);
            assertThat(all.names()).containsExactly("task.submitted", "job.started", "job.finished");
            startedId = all.events().get(1).id();
        }
        try (SseReader resumed = open(task, ACME, startedId)) {
            await().atMost(PATIENCE).until(resumed::ended);
            assertThat(resumed.names()).containsExactly("job.finished");
        }
    }

    @Test
    void aLastEventIdPastTheNewestEventResumesFromTheNewestInsteadOfFilteringOutEveryLiveEvent() throws Exception {
        // An id from a Redis that restarted and lost its last second, or from another fleet.
        String task = coordinator.submit(ACME, TASK);
        EventHub hub = coordinator.context().getBean(EventHub.class);
        await().atMost(PATIENCE).until(() -> hub.subscribers() == 0);
        try (SseReader resumed = open(task, ACME, "99999999999999-0")) {
            await().atMost(PATIENCE).until(() -> hub.subscribers() == 1);
            jobStarted(task);
            jobFinished(task, "completed");
            await().atMost(PATIENCE).until(resumed::ended);
            assertThat(resumed.names()).containsExactly("job.started", "job.finished");
        }
        // The largest id there is: no wrap-around to a replay of everything.
        String other = coordinator.submit(ACME, TASK);
        jobFinished(other, "completed");
        String max = "18446744073709551615-18446744073709551615";
        await().atMost(PATIENCE).until(() -> hub.subscribers() == 0);
        try (SseReader resumed = open(other, ACME, max)) {
            await().atMost(PATIENCE).until(() -> hub.subscribers() == 1 || resumed.ended());
            assertThat(resumed.names()).isEmpty();
        }
    }

    @Test
    void aReplayPastItsCapKeepsTheNewestEvents() {
        String task = UUID.randomUUID().toString();
        var redis = coordinator.redis().redis();
        String before = redis.xadd(coordinator.redis().keys().events(), Map.of("type", "job.started", "task_id", "another",
                "tenant", "acme"));
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            ids.add(redis.xadd(coordinator.redis().keys().events(), Map.of("type", "job.started", "task_id", task, "tenant", "acme",
                    "n", Integer.toString(i))));
        }
        EventReplay.Replay replay = EventReplay.read(coordinator.redis().redis(), coordinator.redis().keys(),
                e -> task.equals(e.taskId()), before, 2);
        assertThat(replay.events()).extracting(StreamEvent::id).containsExactly(ids.get(3), ids.get(4));
        assertThat(replay.position()).isEqualTo(ids.get(4));
        assertThat(replay.complete()).as("three of the task's events left out").isFalse();
        assertThat(EventReplay.read(coordinator.redis().redis(), coordinator.redis().keys(), e -> task.equals(e.taskId()),
                before, 5).complete()).isTrue();
    }

    @Test
    void resumingALiveStreamDeliversOnlyLaterEvents() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        jobStarted(task);
        String startedId;
        try (SseReader first = open(task, ACME, null)) {
            await().atMost(PATIENCE).until(() -> first.names().contains("job.started"));
            startedId = first.events().get(1).id();
        }
        EventHub hub = coordinator.context().getBean(EventHub.class);
        await().atMost(PATIENCE).until(() -> hub.subscribers() == 0);
        try (SseReader resumed = open(task, ACME, startedId)) {
            // Published once the stream is live, so it arrives through the hub, not the replay.
            await().atMost(PATIENCE).until(() -> hub.subscribers() == 1);
            jobFinished(task, "failed");
            await().atMost(PATIENCE).until(resumed::ended);
            assertThat(resumed.names()).containsExactly("job.finished");
        }
    }

    @Test
    void aTaskThatHasAlreadyEndedStreamsItsPastAndEnds() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        coordinator.context().getBean(TaskStore.class).setStatus(UUID.fromString(task), TaskStatus.CANCELLED);
        try (SseReader sse = open(task, ACME, null)) {
            await().atMost(PATIENCE).until(sse::ended);
            assertThat(sse.names()).containsExactly("task.submitted");
        }
    }

    @Test
    void anotherTenantsOrAnUnknownTaskIs404JsonAndABadLastEventIdIs400() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        for (String[] attempt : new String[][] {{task, GLOBEX}, {UUID.randomUUID().toString(), ACME}, {"not-a-uuid", ACME}}) {
            HttpResponse<String> response = coordinator.http().send(java.net.http.HttpRequest.newBuilder(
                            coordinator.uri("/api/v1/tasks/" + attempt[0] + "/events"))
                    .header("X-API-Key", attempt[1]).header("Accept", "text/event-stream").GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            assertThat(response.statusCode()).as(response.body()).isEqualTo(404);
            assertThat(response.headers().firstValue("Content-Type")).hasValueSatisfying(
                    t -> assertThat(t).startsWith("application/json"));
            assertThat(json(response).get("error").asText()).isEqualTo("not_found");
        }

        HttpResponse<String> bad = coordinator.http().send(java.net.http.HttpRequest.newBuilder(
                        coordinator.uri("/api/v1/tasks/" + task + "/events"))
                .header("X-API-Key", ACME).header("Last-Event-ID", "yesterday").GET().build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(bad.statusCode()).isEqualTo(400);
        assertThat(json(bad).get("errors").get(0).get("field").asText()).isEqualTo("Last-Event-ID");

        HttpResponse<String> anonymous = coordinator.http().send(java.net.http.HttpRequest.newBuilder(
                coordinator.uri("/api/v1/tasks/" + task + "/events")).GET().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(anonymous.statusCode()).isEqualTo(401);
    }

    @Test
    void aClientThatHangsUpIsForgottenByTheHub() throws Exception {
        EventHub hub = coordinator.context().getBean(EventHub.class);
        String task = coordinator.submit(ACME, TASK);
        int before = hub.subscribers();
        SseReader sse = open(task, ACME, null);
        await().atMost(PATIENCE).until(() -> sse.names().contains("task.submitted"));
        assertThat(hub.subscribers()).isEqualTo(before + 1);
        sse.close();
        await().atMost(Duration.ofSeconds(30)).until(() -> hub.subscribers() == before);
    }

    @Test
    void theTenantStreamCarriesEveryTaskOfTheCallersTenantLiveAndNothingOfAnothers() throws Exception {
        EventHub hub = coordinator.context().getBean(EventHub.class);
        String before = coordinator.submit(ACME, TASK); // published before the stream opened: not sent
        int subscribers = hub.subscribers();
        try (SseReader acme = openTenant(ACME, null); SseReader globex = openTenant(GLOBEX, null)) {
            assertThat(acme.response().statusCode()).isEqualTo(200);
            await().atMost(PATIENCE).until(() -> hub.subscribers() == subscribers + 2);
            String first = coordinator.submit(ACME, TASK);
            String second = coordinator.submit(ACME, TASK);
            String theirs = coordinator.submit(GLOBEX, TASK);
            jobStarted(first);
            jobFinished(first, "completed"); // the task's end does not end the tenant's stream
            jobStarted(second);
            events.publish("fleet.paused", Map.of("agent", "demo")); // no tenant: nobody's
            await().atMost(PATIENCE).until(() -> acme.events().size() == 6);
            await().atMost(PATIENCE).until(() -> globex.names().contains("task.submitted"));
            assertThat(acme.ended()).isFalse();
            assertThat(acme.names()).containsExactly("stream.connected", "task.submitted", "task.submitted", "job.started",
                    "job.finished", "job.started");
            // First, where the stream starts: the events before it are not sent, and the client lists the tasks.
            SseEvent connected = acme.events().getFirst();
            assertThat(JSON.readTree(connected.data()).get("complete").asText()).isEqualTo("false");
            assertThat(dev.kage.coordinator.events.StreamIds.compare(connected.id(), acme.events().get(1).id())).isNegative();
            for (SseEvent event : acme.events().subList(1, acme.events().size())) {
                JsonNode data = JSON.readTree(event.data());
                assertThat(data.get("tenant").asText()).isEqualTo("acme");
                assertThat(data.get("task_id").asText()).isIn(first, second).isNotEqualTo(before);
            }
            assertThat(globex.names()).containsExactly("stream.connected", "task.submitted");
            assertThat(JSON.readTree(globex.events().get(1).data()).get("task_id").asText()).isEqualTo(theirs);

            // A client that reconnects with the last id it saw gets what it missed, then live events.
            String resumeAt = acme.events().get(3).id();
            try (SseReader resumed = openTenant(ACME, resumeAt)) {
                await().atMost(PATIENCE).until(() -> resumed.events().size() == 3);
                assertThat(resumed.names()).containsExactly("stream.connected", "job.finished", "job.started");
                assertThat(resumed.events().getFirst().id()).as("its own place").isEqualTo(resumeAt);
                assertThat(JSON.readTree(resumed.events().getFirst().data()).get("complete").asText()).isEqualTo("true");
                jobFinished(second, "completed");
                await().atMost(PATIENCE).until(() -> resumed.events().size() == 4);
            }
        }
        HttpResponse<String> bad = coordinator.http().send(java.net.http.HttpRequest.newBuilder(coordinator.uri("/api/v1/events"))
                .header("X-API-Key", ACME).header("Last-Event-ID", "yesterday").GET().build(), HttpResponse.BodyHandlers.ofString());
        assertThat(bad.statusCode()).isEqualTo(400);
        assertThat(json(bad).get("errors").get(0).get("field").asText()).isEqualTo("Last-Event-ID");
        await().atMost(Duration.ofSeconds(30)).until(() -> hub.subscribers() == subscribers);
    }

    @Test
    void aResumeFromAnEventTheCappedStreamTrimmedSaysEventsMayBeMissing() throws Exception {
        String task = coordinator.submit(ACME, TASK);
        String place;
        try (SseReader first = openTenant(ACME, null)) {
            await().atMost(PATIENCE).until(() -> first.names().contains("stream.connected"));
            place = first.events().getFirst().id();
        }
        // Three events after the client's place, then the stream trimmed to its newest (EventLog caps it at ~10,000):
        // the first two are gone, and a replay from the place cannot say what they were.
        jobStarted(task);
        jobFinished(task, "running");
        jobStarted(task);
        coordinator.redis().redis().xtrim(coordinator.redis().keys().events(), 1);
        try (SseReader resumed = openTenant(ACME, place)) {
            await().atMost(PATIENCE).until(() -> resumed.events().size() == 2);
            assertThat(resumed.names()).containsExactly("stream.connected", "job.started");
            assertThat(JSON.readTree(resumed.events().getFirst().data()).get("complete").asText()).isEqualTo("false");
        }
        String newest = EventReplay.newest(coordinator.redis().redis(), coordinator.redis().keys());
        try (SseReader resumed = openTenant(ACME, newest)) {
            await().atMost(PATIENCE).until(() -> resumed.names().contains("stream.connected"));
            assertThat(JSON.readTree(resumed.events().getFirst().data()).get("complete").asText()).as("nothing missed")
                    .isEqualTo("true");
        }
    }

    private static SseReader openTenant(String key, String lastEventId) {
        return new SseReader(coordinator.http(), coordinator.uri("/api/v1/events"), key, lastEventId);
    }

    private static SseReader open(String task, String key, String lastEventId) {
        return new SseReader(coordinator.http(), coordinator.uri("/api/v1/tasks/" + task + "/events"), key, lastEventId);
    }

    private static void jobStarted(String task) {
        events.publish("job.started", Map.of("task_id", task, "tenant", "acme", "agent", "demo", "worker", "w-1"));
    }

    private static void jobFinished(String task, String taskStatus) {
        events.publish("job.finished", Map.of("task_id", task, "tenant", "acme", "agent", "demo",
                "status", "completed", "task_status", taskStatus));
    }
}
