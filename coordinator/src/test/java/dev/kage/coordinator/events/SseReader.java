package dev.kage.coordinator.events;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.stream.Stream;

/**
 * Reads a server-sent event stream with the JDK client, line by line on a thread of its own, the way a
 * browser's EventSource would.
 */
final class SseReader implements AutoCloseable {
    /** One dispatched event: its id, name ({@code message} when unnamed) and data. */
    record SseEvent(String id, String name, String data) {
    }

    private final List<String> lines = new CopyOnWriteArrayList<>();
    private final ExecutorService reader = Executors.newSingleThreadExecutor();
    private final CompletableFuture<HttpResponse<Stream<String>>> response;
    private final CompletableFuture<Void> finished;

    SseReader(HttpClient http, URI uri, String apiKey, String lastEventId) {
        HttpRequest.Builder request = HttpRequest.newBuilder(uri).header("X-API-Key", apiKey)
                .header("Accept", "text/event-stream").GET();
        if (lastEventId != null) {
            request.header("Last-Event-ID", lastEventId);
        }
        response = http.sendAsync(request.build(), HttpResponse.BodyHandlers.ofLines());
        finished = response.thenAcceptAsync(r -> {
            try (Stream<String> body = r.body()) {
                body.forEach(lines::add);
            }
        }, reader);
    }

    HttpResponse<Stream<String>> response() {
        return response.join();
    }

    /** True once the server ended the stream (or the reader was closed). */
    boolean ended() {
        return finished.isDone();
    }

    String text() {
        return String.join("\n", lines);
    }

    /** The events received so far, parsed by the rules of the SSE specification. */
    List<SseEvent> events() {
        List<SseEvent> events = new ArrayList<>();
        String id = null;
        String name = null;
        StringBuilder data = null;
        for (String line : lines) {
            if (line.isEmpty()) {
                if (data != null) {
                    events.add(new SseEvent(id, name == null ? "message" : name, data.toString()));
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
                case "id" -> id = value;
                case "event" -> name = value;
                case "data" -> data = data == null ? new StringBuilder(value) : data.append('\n').append(value);
                default -> {
                }
            }
        }
        return events;
    }

    List<String> names() {
        return events().stream().map(SseEvent::name).toList();
    }

    @Override
    public void close() {
        response.thenAccept(r -> r.body().close());
        finished.cancel(true);
        reader.shutdownNow();
    }
}
