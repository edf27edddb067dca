package dev.kage.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.MissingNode;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The coordinator's HTTP API as {@code kage} uses it: JSON requests with the {@code X-API-Key} header, and
 * server-sent events. An answer of 400 or more becomes a {@link ClientException.ApiError} carrying the API's message; a
 * connection that fails or times out becomes an {@link ClientException} with {@link ExitCodes#UNAVAILABLE}. Thread-safe.
 */
public final class ApiClient {
    static final ObjectMapper JSON = new ObjectMapper();
    /** How long to wait for a TCP connection. */
    static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(5);
    /** How long to wait for an answer to an ordinary request (not an event stream). */
    static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(30);

    private final String baseUrl;
    private final String key;
    private final HttpClient http;

    /**
     * @param baseUrl the coordinator, e.g. {@code http://127.0.0.1:8003}, without a trailing slash
     * @param key     the API key; sent only in the {@code X-API-Key} header
     */
    public ApiClient(String baseUrl, String key) {
        this.baseUrl = baseUrl;
        this.key = key;
        this.http = HttpClient.newBuilder().connectTimeout(CONNECT_TIMEOUT).build();
    }

    /**
     * An answer with a status below 400.
     *
     * @param body the parsed body, {@link MissingNode} when it was empty
     * @param text the body as received
     */
    public record Response(int status, HttpHeaders headers, JsonNode body, String text) {
    }

    public Response get(String path) {
        return send(request(path).GET().build());
    }

    public Response post(String path, JsonNode body, Map<String, String> headers) {
        HttpRequest.Builder request = request(path).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body == null ? "" : body.toString()));
        headers.forEach(request::header);
        return send(request.build());
    }

    public Response delete(String path) {
        return send(request(path).DELETE().build());
    }

    /**
     * Reads the server-sent events at {@code path} until the server ends the stream, handing each to
     * {@code onEvent} on the calling thread.
     *
     * @param lastEventId sent as {@code Last-Event-ID} to resume after that event; null for the whole stream
     * @throws ClientException.ApiError when the server refuses the stream (its JSON error)
     * @throws ClientException          (unavailable) when the connection fails, before or during the stream
     */
    public void events(String path, String lastEventId, Consumer<SseEvent> onEvent) {
        events(path, lastEventId, () -> { }, onEvent);
    }

    /** As {@link #events(String, String, Consumer)}, calling {@code onOpen} once the server has accepted the stream. */
    public void events(String path, String lastEventId, Runnable onOpen, Consumer<SseEvent> onEvent) {
        HttpRequest.Builder request = HttpRequest.newBuilder(uri(path)).header("X-API-Key", key)
                .header("Accept", "text/event-stream").GET();
        if (lastEventId != null) {
            request.header("Last-Event-ID", lastEventId);
        }
        HttpResponse<InputStream> response;
        try {
            response = http.send(request.build(), HttpResponse.BodyHandlers.ofInputStream());
        } catch (IOException e) {
            throw unreachable(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw ClientException.unreachable("interrupted", e);
        }
        try (InputStream in = response.body()) {
            if (response.statusCode() >= 400) {
                throw error(response.statusCode(), new String(in.readAllBytes(), StandardCharsets.UTF_8));
            }
            onOpen.run();
            SseEvent.read(in, onEvent);
        } catch (IOException e) {
            throw ClientException.unreachable("the event stream from " + baseUrl + " broke: " + describe(e), e);
        }
    }

    /** {@code path?name=value&...} with the values URL-encoded; null values left out. */
    public static String withQuery(String path, Map<String, String> parameters) {
        StringBuilder out = new StringBuilder(path);
        char separator = '?';
        for (Map.Entry<String, String> e : parameters.entrySet()) {
            if (e.getValue() != null) {
                out.append(separator).append(e.getKey()).append('=').append(URLEncoder.encode(e.getValue(), StandardCharsets.UTF_8));
                separator = '&';
            }
        }
        return out.toString();
    }

    /** A path segment, encoded, so a task id typed by a person cannot change the path. */
    public static String segment(String value) {
        return URLEncoder.encode(value, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** Parameters in the order given. */
    public static Map<String, String> params(String... nameValues) {
        Map<String, String> map = new LinkedHashMap<>();
        for (int i = 0; i + 1 < nameValues.length; i += 2) {
            map.put(nameValues[i], nameValues[i + 1]);
        }
        return map;
    }

    private HttpRequest.Builder request(String path) {
        return HttpRequest.newBuilder(uri(path)).timeout(REQUEST_TIMEOUT).header("X-API-Key", key)
                .header("Accept", "application/json");
    }

    private URI uri(String path) {
        try {
            return URI.create(baseUrl + path);
        } catch (IllegalArgumentException e) {
            throw ClientException.usage("'" + baseUrl + path + "' is not a URL: " + e.getMessage());
        }
    }

    private Response send(HttpRequest request) {
        HttpResponse<String> response;
        try {
            response = http.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw unreachable(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw ClientException.unreachable("interrupted", e);
        }
        String text = response.body() == null ? "" : response.body();
        if (response.statusCode() >= 400) {
            throw error(response.statusCode(), text);
        }
        return new Response(response.statusCode(), response.headers(), parse(text), text);
    }

    private ClientException unreachable(IOException e) {
        return ClientException.unreachable("cannot reach the coordinator at " + baseUrl + ": " + describe(e), e);
    }

    private static String describe(IOException e) {
        if (e instanceof java.net.http.HttpConnectTimeoutException) {
            return "no connection within " + CONNECT_TIMEOUT.toSeconds() + " s";
        }
        if (e instanceof java.net.http.HttpTimeoutException) {
            return "no answer within " + REQUEST_TIMEOUT.toSeconds() + " s";
        }
        if (e instanceof java.net.ConnectException && (e.getMessage() == null || e.getMessage().isBlank())) {
            return "connection refused (is the coordinator running?)";
        }
        String message = e.getMessage();
        if (message == null || message.isBlank()) {
            Throwable cause = e.getCause();
            message = cause != null && cause.getMessage() != null ? cause.getMessage() : e.getClass().getSimpleName();
        }
        return message;
    }

    /** The API's error body {@code {"error", "message", "errors": [{"field", "message"}]}}, or the text as it came. */
    static ClientException.ApiError error(int status, String text) {
        JsonNode body = parse(text);
        List<String> fields = new ArrayList<>();
        if (body.isObject() && body.path("message").isTextual()) {
            for (JsonNode field : body.path("errors")) {
                fields.add(field.path("field").asText() + ": " + field.path("message").asText());
            }
            return new ClientException.ApiError(status, body.path("error").asText(null), body.path("message").asText(), fields);
        }
        String shown = text.strip();
        if (shown.isEmpty()) {
            shown = "HTTP " + status + " with no body";
        } else if (shown.length() > 500) {
            shown = shown.substring(0, 500) + "…";
        }
        return new ClientException.ApiError(status, null, shown, fields);
    }

    private static JsonNode parse(String text) {
        if (text == null || text.isBlank()) {
            return MissingNode.getInstance();
        }
        try {
            return JSON.readTree(text);
        } catch (JsonProcessingException e) {
            return MissingNode.getInstance();
        }
    }
}
