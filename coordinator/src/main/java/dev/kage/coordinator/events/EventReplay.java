package dev.kage.coordinator.events;

import dev.kage.coordinator.api.ErrorBody;
import dev.kage.redis.KageKeys;
import io.lettuce.core.Limit;
import io.lettuce.core.Range;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.api.sync.RedisCommands;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;

/** What both event streams share: reading the past of {@code kage:events} and refusing a bad {@code Last-Event-ID}. */
final class EventReplay {
    private static final int PAGE = 500;

    private EventReplay() {
    }

    /**
     * The events that {@code wanted} accepts after stream id {@code after} (from the start when null), in pages: the
     * newest {@code max} of them when there are more (a resuming client gets the latest state, not a gap before it).
     * An {@code after} beyond the newest entry — an id this stream never sent, or one a restarted Redis lost — counts
     * as the newest entry: live events follow it, where a future position would filter out every one of them.
     *
     * @return them, the id of the last entry read, whichever event it was (live events up to it are in the replay), and
     *         whether they are every wanted event after {@code after}: not when the stream was trimmed past it, when
     *         only the newest {@code max} are returned, or when {@code after} is beyond the newest entry (Redis lost it)
     */
    static Replay read(RedisCommands<String, String> redis, KageKeys keys, Predicate<StreamEvent> wanted, String after, int max) {
        java.util.ArrayDeque<StreamEvent> events = new java.util.ArrayDeque<>();
        String position = after == null ? StreamIds.ZERO : after;
        boolean complete = true;
        if (after != null) {
            String last = newest(redis, keys);
            if (StreamIds.compare(after, last) >= 0) {
                return new Replay(List.of(), last, StreamIds.compare(after, last) == 0);
            }
            // The capped stream (EventLog.MAX_EVENTS) may have trimmed entries after it: what happened then is not here.
            List<StreamMessage<String, String>> oldest = redis.xrange(keys.events(), Range.create("-", "+"), Limit.from(1));
            complete = !oldest.isEmpty() && StreamIds.compare(oldest.getFirst().getId(), StreamIds.successor(after)) <= 0;
        }
        String from = after == null ? "-" : StreamIds.successor(after);
        while (true) {
            List<StreamMessage<String, String>> page = redis.xrange(keys.events(), Range.create(from, "+"), Limit.from(PAGE));
            for (StreamMessage<String, String> message : page) {
                StreamEvent event = new StreamEvent(message.getId(), message.getBody());
                if (wanted.test(event)) {
                    events.addLast(event);
                    if (events.size() > max) {
                        events.removeFirst();
                        complete = false;
                    }
                }
                position = message.getId();
            }
            if (page.size() < PAGE) {
                return new Replay(new ArrayList<>(events), position, complete);
            }
            from = StreamIds.successor(position);
        }
    }

    /**
     * How far before the task's creation a first connection to its stream reads, and at least how far before its
     * {@code task.submitted} event: room for the clocks of Postgres ({@code created_at}) and Redis (entry ids) to
     * differ. Every event of a task is added after its row is committed.
     */
    static final java.time.Duration TASK_LOOKBACK = java.time.Duration.ofSeconds(10);

    /**
     * A task's past events for a first connection to its stream (no {@code Last-Event-ID}), read from the newest entry
     * backwards: down to {@link #TASK_LOOKBACK} before the task was created ({@code createdAt}, Postgres's clock), once
     * its {@code task.submitted} event has been read and is no later than that (else down to {@link #TASK_LOOKBACK}
     * before that event); to the oldest entry while no {@code task.submitted} is found (not published yet, trimmed, or
     * Redis's clock far behind Postgres's). Before, every connection read the whole capped stream (about 10,000 entries)
     * to find a new task's few events.
     *
     * @return them, oldest first; the newest entry's id as the position (live events after it follow); complete
     */
    static Replay readTask(RedisCommands<String, String> redis, KageKeys keys, Predicate<StreamEvent> wanted,
                           java.time.Instant createdAt) {
        List<StreamEvent> newestFirst = new ArrayList<>();
        String position = null;
        long floor = createdAt.toEpochMilli() - TASK_LOOKBACK.toMillis();
        boolean submitted = false;
        Range.Boundary<String> upper = Range.Boundary.unbounded();
        while (true) {
            List<StreamMessage<String, String>> page = redis.xrevrange(keys.events(),
                    Range.from(Range.Boundary.unbounded(), upper), Limit.from(PAGE));
            for (StreamMessage<String, String> message : page) {
                if (position == null) {
                    position = message.getId();
                }
                long millis = StreamIds.millis(message.getId());
                if (submitted && millis < floor) {
                    return new Replay(newestFirst.reversed(), position, true);
                }
                StreamEvent event = new StreamEvent(message.getId(), message.getBody());
                if (wanted.test(event)) {
                    newestFirst.add(event);
                    if (SUBMITTED.equals(event.type())) {
                        submitted = true;
                        floor = Math.min(floor, millis - TASK_LOOKBACK.toMillis());
                    }
                }
            }
            if (page.size() < PAGE) {
                return new Replay(newestFirst.reversed(), position == null ? StreamIds.ZERO : position, true);
            }
            upper = Range.Boundary.excluding(page.getLast().getId());
        }
    }

    private static final String SUBMITTED = "task.submitted";

    /** The id of the newest event in the stream ({@link StreamIds#ZERO} when there is none). */
    static String newest(RedisCommands<String, String> redis, KageKeys keys) {
        List<StreamMessage<String, String>> newest = redis.xrevrange(keys.events(), Range.create("-", "+"), Limit.from(1));
        return newest.isEmpty() ? StreamIds.ZERO : newest.getFirst().getId();
    }

    /** The 400 for a {@code Last-Event-ID} that is no id of this stream. */
    static HttpResponse<ErrorBody> badLastEventId(String text) {
        return HttpResponse.<ErrorBody>status(HttpStatus.BAD_REQUEST)
                .contentType(MediaType.APPLICATION_JSON_TYPE)
                .body(new ErrorBody("validation_failed", "the request is invalid: " + TaskEventsController.LAST_EVENT_ID
                        + " is not an event id", List.of(new ErrorBody.FieldError(TaskEventsController.LAST_EVENT_ID, "'"
                        + dev.kage.coordinator.api.ErrorBody.printable(text) + "' is not an id this stream sent, e.g. 1718000000000-0"))));
    }

    /**
     * @param position the id of the last entry read
     * @param complete every wanted event after the one asked for is in {@code events}
     */
    record Replay(List<StreamEvent> events, String position, boolean complete) {
    }
}
