package dev.kage.client;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class SseEventTest {

    @Test
    void eventsAreSplitOnBlankLinesWithNameIdAndDataAndCommentsAreSkipped() throws Exception {
        String stream = ": keep-alive\n\n"
                + "event: job.started\nid: 1718000000000-0\ndata: {\"agent\":\"demo\",\"worker\":\"w1\"}\n\n"
                + "event:job.finished\nid:1718000000001-0\ndata: line one\ndata: line two\n\n"
                + "data: no name\n\n"
                + "event: never-dispatched\n";
        List<SseEvent> events = new ArrayList<>();
        SseEvent.read(new ByteArrayInputStream(stream.getBytes(StandardCharsets.UTF_8)), events::add);

        assertThat(events).hasSize(3);
        assertThat(events.get(0).name()).isEqualTo("job.started");
        assertThat(events.get(0).id()).isEqualTo("1718000000000-0");
        assertThat(events.get(0).field("worker", null)).isEqualTo("w1");
        assertThat(events.get(0).field("missing", "fallback")).isEqualTo("fallback");
        assertThat(events.get(1).name()).isEqualTo("job.finished");
        assertThat(events.get(1).data()).isEqualTo("line one\nline two");
        assertThat(events.get(1).json().isMissingNode()).isTrue();
        assertThat(events.get(2).name()).isEqualTo("message");
        // the last id carries over to an event without one, as EventSource does
        assertThat(events.get(2).id()).isEqualTo("1718000000001-0");
    }
}
