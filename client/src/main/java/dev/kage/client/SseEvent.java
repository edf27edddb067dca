package dev.kage.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.MissingNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;

/**
 * One server-sent event. The coordinator names each event by its type ({@code job.started}, ...), sends the stream
 * entry id as {@code id} and the event's fields as a JSON object as {@code data}. Immutable.
 *
 * @param name the {@code event:} field, {@code message} when absent
 * @param id   the {@code id:} field, or null
 * @param data the {@code data:} lines joined by newlines
 */
public record SseEvent(String name, String id, String data) {

    /** {@code data} as JSON, {@link MissingNode} when it is not JSON. */
    public JsonNode json() {
        try {
            JsonNode node = ApiClient.JSON.readTree(data);
            return node == null ? MissingNode.getInstance() : node;
        } catch (JsonProcessingException e) {
            return MissingNode.getInstance();
        }
    }

    /** The field {@code name} of the data, or {@code fallback}. */
    public String field(String name, String fallback) {
        JsonNode value = json().get(name);
        return value == null || value.isNull() ? fallback : value.asText();
    }

    /**
     * Reads {@code text/event-stream} (the WHATWG format: {@code field: value} lines, a blank line dispatches,
     * {@code :} lines are comments) until the stream ends; events without data are not dispatched.
     */
    public static void read(InputStream in, Consumer<SseEvent> onEvent) throws IOException {
        read(in, () -> { }, onEvent);
    }

    /** As {@link #read(InputStream, Consumer)}, calling {@code onLine} for each line read, comments included. */
    public static void read(InputStream in, Runnable onLine, Consumer<SseEvent> onEvent) throws IOException {
        BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        String name = null;
        String id = null;
        StringBuilder data = null;
        String line;
        while ((line = reader.readLine()) != null) {
            onLine.run();
            if (line.isEmpty()) {
                if (data != null) {
                    onEvent.accept(new SseEvent(name == null || name.isEmpty() ? "message" : name, id, data.toString()));
                }
                name = null;
                data = null;
                continue;
            }
            if (line.startsWith(":")) {
                continue;
            }
            int colon = line.indexOf(':');
            String field = colon < 0 ? line : line.substring(0, colon);
            String value = colon < 0 ? "" : line.substring(colon + 1);
            if (value.startsWith(" ")) {
                value = value.substring(1);
            }
            switch (field) {
                case "event" -> name = value;
                case "id" -> id = value;
                case "data" -> data = data == null ? new StringBuilder(value) : data.append('\n').append(value);
                default -> {
                    // retry and unknown fields: ignored
                }
            }
        }
    }
}
