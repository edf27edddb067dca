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
