package dev.kage.events;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.RedisFixture;
import io.lettuce.core.Range;
import io.lettuce.core.StreamMessage;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The event stream in real Redis: what a batch publishes is what one-by-one publishing would have written. */
class EventLogTest {
    private final RedisFixture redis = new RedisFixture();
    private final EventLog events = new EventLog(redis.keys(), redis.redis(),
            Clock.fixed(Instant.parse("2026-11-29T10:00:00Z"), ZoneOffset.UTC));

    @AfterEach
    void cleanUp() {
        redis.close();
    }

    @Test
    void aBatchAppendsEveryEventInOrderAsItsOwnEntry() {
        events.publish("task.cancelled", Map.of("task_id", "before"));
        List<String[]> batch = new ArrayList<>();
        for (int i = 0; i < 2 * EventLog.PUBLISH_CHUNK + 7; i++) {
            batch.add(new String[] {"t" + i, "acme", i % 2 == 0 ? "a,b" : null});
        }
        batch.add(new String[] {"é ✓", null}); // fewer values than names: the rest left out
        List<String> names = List.of("task_id", "tenant", "agents");
        events.sendPublishAll("task.submitted", names, batch).await();

        List<StreamMessage<String, String>> entries = redis.redis().xrange(redis.keys().events(), Range.create("-", "+"));
        assertThat(entries).hasSize(batch.size() + 1);
        assertThat(entries.getFirst().getBody()).containsEntry("task_id", "before");
        // In publish()'s order: type and at first, then the fields with a value.
        assertThat(List.copyOf(entries.getLast().getBody().entrySet())).containsExactly(Map.entry("type", "task.submitted"),
                Map.entry("at", "2026-11-29T10:00:00Z"), Map.entry("task_id", "é ✓"));
        for (int i = 0; i < batch.size() - 1; i++) {
            Map<String, String> body = entries.get(i + 1).getBody();
            assertThat(List.copyOf(body.keySet()).subList(0, 2)).containsExactly("type", "at");
            assertThat(body).containsEntry("type", "task.submitted").containsEntry("at", "2026-11-29T10:00:00Z")
                    .containsEntry("task_id", "t" + i).containsEntry("tenant", "acme");
            if (i % 2 == 0) {
                assertThat(body).containsEntry("agents", "a,b").hasSize(5);
            } else {
                assertThat(body).as("null values are left out").doesNotContainKey("agents").hasSize(4);
            }
        }

        // An event's own fields cannot be named again, nor can values outnumber names; nothing is sent.
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> events.sendPublishAll("x", List.of("at"), List.of()))
                .isInstanceOf(IllegalArgumentException.class);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> events.sendPublishAll("x", List.of("a"),
                List.<String[]>of(new String[] {"1", "2"}))).isInstanceOf(IllegalArgumentException.class);
        assertThat(redis.redis().xlen(redis.keys().events())).isEqualTo(batch.size() + 1);
    }
}
