package dev.kage.coordinator.events;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.RedisFixture;
import io.lettuce.core.XAddArgs;
import java.time.Instant;
import java.util.Map;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * A first connection to a task's event stream reads {@code kage:events} from the newest entry back to the task's
 * creation, not the whole capped stream; entries are added with chosen ids (a fresh namespace per test) to place
 * them in time.
 */
class EventReplayTest {
    private static final String TASK = "6f1c0a52-7d8e-4b0c-9a3e-1f2d3c4b5a69";
    private static final Predicate<StreamEvent> OF_TASK = e -> TASK.equals(e.taskId());

    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void close() {
        redis.close();
    }

    @Test
    void aFirstConnectionReadsBackToTheTasksCreationAcrossPagesAndNoFurther() {
        long created = 1_900_000_000_000L;
        // Older than the task by an hour: no event of it can be there. A whole-stream read returned it.
        add(created - 3_600_000, 0, TASK, "job.finished");
        for (int i = 0; i < 700; i++) {
            add(created - 60_000, i, "other-" + i, "job.started");
        }
        // A job started a moment before the relay's task.submitted reached the stream (they are sent together).
        add(created - 2, 0, TASK, "job.started");
        add(created, 0, TASK, "task.submitted");
        for (int i = 0; i < 1_200; i++) {
            add(created + 1, i, "other-" + i, "job.finished");
        }
        add(created + 500, 0, TASK, "job.finished");
        for (int i = 0; i < 600; i++) {
            add(created + 501, i, "other-" + i, "task.submitted");
        }

        EventReplay.Replay replay = EventReplay.readTask(redis.redis(), redis.keys(), OF_TASK, Instant.ofEpochMilli(created));

        assertThat(replay.events()).extracting(StreamEvent::type).containsExactly("job.started", "task.submitted",
                "job.finished");
        assertThat(replay.events()).extracting(StreamEvent::id).containsExactly((created - 2) + "-0", created + "-0",
                (created + 500) + "-0");
        assertThat(replay.position()).as("the newest entry: live events after it follow").isEqualTo((created + 501) + "-599");
        assertThat(replay.complete()).isTrue();
    }

    @Test
    void withRedisClockFarBehindPostgresItReadsBackPastTheTasksSubmittedEvent() {
        long created = 1_900_000_000_000L;
        long redisBehind = 90_000;
        add(created - 3_600_000, 0, TASK, "job.started");
        add(created - redisBehind - 3, 0, "other", "job.started");
        add(created - redisBehind - 2, 0, TASK, "task.cancelled");
        add(created - redisBehind, 0, TASK, "task.submitted");
        add(created - redisBehind + 1, 0, "other", "job.finished");

        EventReplay.Replay replay = EventReplay.readTask(redis.redis(), redis.keys(), OF_TASK, Instant.ofEpochMilli(created));

        assertThat(replay.events()).extracting(StreamEvent::type).containsExactly("task.cancelled", "task.submitted");
    }

    @Test
    void aTaskWhoseSubmittedEventIsNotInTheStreamYetIsLookedForInTheWholeStream() {
        long created = 1_900_000_000_000L;
        add(created - 3_600_000, 0, TASK, "task.cancelled");
        add(created + 1, 0, "other", "task.submitted");

        assertThat(EventReplay.readTask(redis.redis(), redis.keys(), OF_TASK, Instant.ofEpochMilli(created)).events())
                .extracting(StreamEvent::type).containsExactly("task.cancelled");
        EventReplay.Replay none = EventReplay.readTask(redis.redis(), redis.keys(), e -> false, Instant.ofEpochMilli(created));
        assertThat(none.events()).isEmpty();
        assertThat(none.position()).isEqualTo((created + 1) + "-0");
    }

    @Test
    void anEmptyStreamHasNothingAndStartsLiveEventsFromTheBeginning() {
        EventReplay.Replay replay = EventReplay.readTask(redis.redis(), redis.keys(), OF_TASK, Instant.now());
        assertThat(replay.events()).isEmpty();
        assertThat(replay.position()).isEqualTo(StreamIds.ZERO);
    }

    private void add(long millis, int sequence, String task, String type) {
        redis.redis().xadd(redis.keys().events(), new XAddArgs().id(millis + "-" + sequence),
                Map.of("type", type, "task_id", task, "tenant", "acme"));
    }
}
