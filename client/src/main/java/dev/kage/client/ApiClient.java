package dev.kage.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.MissingNode;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.UnknownHostException;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.channels.UnresolvedAddressException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The coordinator's HTTP API as {@code kage} uses it: JSON requests with the {@code X-API-Key} header, and
 * server-sent events. An answer of 400 or more becomes a {@link ClientException.ApiError} carrying the API's message; a
 * connection that fails or times out becomes an {@link ClientException} with {@link ExitCodes#UNAVAILABLE}, and so does an
 * answer that is not the API's: any other status outside 200-299 (a redirect is not followed), a body that is not a JSON
 * object, an event stream that is not {@code text/event-stream}. Thread-safe.
 */
public final class ApiClient {
    static final ObjectMapper JSON = new ObjectMapper();
    /** How long to wait for a TCP connection. */
    static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(5);
    /** How long to wait for an answer to an ordinary request (not an event stream). */
    static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(30);
    /**
     * How long an event stream may stay silent before it counts as broken (a half-open connection): the coordinator
     * sends a {@code : keep-alive} comment every 15 s, so three of them missed.
     */
    static final Duration STREAM_IDLE_LIMIT = Duration.ofSeconds(45);

    private final String baseUrl;
    private final String key;
    private final HttpClient http;
    private final Duration requestTimeout;
    private final Duration streamIdleLimit;

    /**
     * @param baseUrl the coordinator, e.g. {@code http://127.0.0.1:8003}, without a trailing slash
     * @param key     the API key; sent only in the {@code X-API-Key} header
     */
    public ApiClient(String baseUrl, String key) {
        this(baseUrl, key, REQUEST_TIMEOUT, STREAM_IDLE_LIMIT);
    }

    /**
     * @param requestTimeout  how long to wait for an answer (for an event stream: for its headers)
     * @param streamIdleLimit how long an event stream may send nothing, not even a comment, before it is closed as broken
     */
    ApiClient(String baseUrl, String key, Duration requestTimeout, Duration streamIdleLimit) {
        this.baseUrl = baseUrl;
        this.key = key;
        this.requestTimeout = requestTimeout;
        this.streamIdleLimit = streamIdleLimit;
        this.http = HttpClient.newBuilder().connectTimeout(CONNECT_TIMEOUT).build();
    }

    /**
     * An answer with a status of 200-299 and a JSON object as its body.
     *
     * @param body the parsed body, always a JSON object
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
     * @throws ClientException          (unavailable) when the connection fails, before or during the stream, when no
     *                                   headers come within the request timeout, when the stream stays silent for the
     *                                   idle limit (all {@link ClientException#retryable()}), or when the answer is not
     *                                   an event stream (not retryable)
     */
    public void events(String path, String lastEventId, Consumer<SseEvent> onEvent) {
        events(path, lastEventId, () -> { }, onEvent);
    }

    /**
     * As {@link #events(String, String, Consumer)}, calling {@code onOpen} once the stream has brought its first line (an
     * event or a keep-alive): a stream that is accepted and then breaks at once, again and again, has not opened.
     */
    public void events(String path, String lastEventId, Runnable onOpen, Consumer<SseEvent> onEvent) {
        // the timeout covers the wait for the headers only; the watchdog below covers the stream
        HttpRequest.Builder request = HttpRequest.newBuilder(uri(path)).timeout(requestTimeout).header("X-API-Key", key)
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
            int status = response.statusCode();
            if (status < 200 || status > 299) {
                throw failure(status, response, errorBody(in));
            }
            String type = response.headers().firstValue("Content-Type").orElse("");
            if (!type.toLowerCase(Locale.ROOT).startsWith("text/event-stream")) {
                throw ClientException.notTheApi("the answer from " + baseUrl + " is not the coordinator's API: HTTP " + status
                        + " with Content-Type " + (type.isEmpty() ? "(none)" : type) + " where an event stream (text/event-stream) was expected");
            }
            readWatched(in, onOpen, onEvent);
        } catch (IOException e) {
            throw ClientException.unreachable("the event stream from " + baseUrl + " broke: " + describe(e), e);
        }
    }

    /**
     * The error body of a refused stream (64 KiB at most), within the request timeout: the request's own timeout ended
     * with the headers, and a proxy that sends an error's headers and then stalls would otherwise hold the reader for
     * ever. Closed at the timeout (an IOException: a broken stream, tried again).
     */
    private String errorBody(InputStream in) throws IOException {
        AtomicBoolean late = new AtomicBoolean();
        ScheduledExecutorService watchdog = Executors.newSingleThreadScheduledExecutor(task -> {
            Thread thread = new Thread(task, "kage-error-body-watchdog");
            thread.setDaemon(true);
            return thread;
        });
        watchdog.schedule(() -> {
            late.set(true);
            try {
                in.close(); // wakes the reader with an IOException
            } catch (IOException ignored) {
                // closing is all that is wanted
            }
        }, requestTimeout.toNanos(), TimeUnit.NANOSECONDS);
        try {
            return new String(in.readNBytes(64 * 1024), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw late.get() ? new IOException("an error's body did not come within " + seconds(requestTimeout), e) : e;
        } finally {
            watchdog.shutdownNow();
        }
    }

    /** Reads the stream, closing it (an IOException) when no line has come for {@link #streamIdleLimit}. */
    private void readWatched(InputStream in, Runnable onFirstLine, Consumer<SseEvent> onEvent) throws IOException {
        AtomicBoolean opened = new AtomicBoolean();
        long limit = streamIdleLimit.toNanos();
        AtomicLong lastActivity = new AtomicLong(System.nanoTime());
        AtomicBoolean dispatching = new AtomicBoolean();
        AtomicBoolean quiet = new AtomicBoolean();
        ScheduledExecutorService watchdog = Executors.newSingleThreadScheduledExecutor(task -> {
            Thread thread = new Thread(task, "kage-event-stream-watchdog");
            thread.setDaemon(true);
            return thread;
        });
        Runnable check = new Runnable() {
            @Override
            public void run() {
                long silent = System.nanoTime() - lastActivity.get();
                if (dispatching.get()) {
                    // an event is being handled (it may read the task): not the stream's silence
                    watchdog.schedule(this, limit, TimeUnit.NANOSECONDS);
                } else if (silent >= limit) {
                    quiet.set(true);
                    try {
                        in.close(); // wakes the reader with an IOException
                    } catch (IOException ignored) {
                        // closing is all that is wanted
                    }
                } else {
                    watchdog.schedule(this, limit - silent, TimeUnit.NANOSECONDS);
                }
            }
        };
        watchdog.schedule(check, limit, TimeUnit.NANOSECONDS);
        try {
            SseEvent.read(in, () -> {
                lastActivity.set(System.nanoTime());
                if (opened.compareAndSet(false, true)) {
                    onFirstLine.run();
                }
            }, event -> {
                dispatching.set(true);
                try {
                    onEvent.accept(event);
                } finally {
                    lastActivity.set(System.nanoTime());
                    dispatching.set(false);
                }
            });
        } catch (IOException e) {
            if (quiet.get()) {
                throw new IOException(silence(), e);
            }
            throw e;
        } finally {
            watchdog.shutdownNow();
        }
        if (quiet.get()) {
            throw new IOException(silence());
        }
    }

    private String silence() {
        return "nothing came for " + seconds(streamIdleLimit) + ", not even a keep-alive";
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
        return HttpRequest.newBuilder(uri(path)).timeout(requestTimeout).header("X-API-Key", key)
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
        int status = response.statusCode();
        if (status < 200 || status > 299) {
            throw failure(status, response, text);
        }
        JsonNode body = parse(text);
        if (!body.isObject()) {
            String type = response.headers().firstValue("Content-Type").orElse("(none)");
            throw ClientException.notTheApi("the answer from " + baseUrl + " is not the coordinator's API: HTTP " + status
                    + ", Content-Type " + type + ", " + (text.isBlank() ? "no body" : "not a JSON object: " + Format.shorten(text, 100)));
        }
        return new Response(status, response.headers(), body, text);
    }

    /** A status outside 200-299: a redirect (not followed) names where it points; 4xx and 5xx are the API's error. */
    private ClientException failure(int status, HttpResponse<?> response, String text) {
        if (status >= 300 && status < 400) {
            String where = response.headers().firstValue("Location").map(location -> {
                try {
                    return response.uri().resolve(location.strip()).toString();
                } catch (IllegalArgumentException notAUri) {
                    return location.strip();
                }
            }).orElse(null);
            return ClientException.notTheApi(status + ": " + baseUrl + " redirects"
                    + (where == null ? " (without a Location)" : " to " + where)
                    + "; redirects are not followed: use the coordinator's own URL (--url, KAGE_URL or url= in the config file)");
        }
        if (status < 400) {
            return ClientException.notTheApi("the answer from " + baseUrl + " is not the coordinator's API: HTTP " + status);
        }
        ClientException.ApiError error = error(status, text, retryAfter(response.headers()));
        if (status < 500 && status != 429 && error.error() == null) {
            // A 4xx without the API's error body comes from something else at that URL (another web server, a proxy's
            // login page): the URL is wrong, not the request (the API answers every refusal in its own shape). A 429
            // stays the retryable "too many" whoever says it (a proxy in front of the coordinator, say).
            return ClientException.notTheApi("the answer from " + baseUrl + " is not the coordinator's API: " + status + ": "
                    + error.apiMessage());
        }
        return error;
    }

    /** {@code Retry-After} as seconds or an HTTP date; null when absent or unreadable. */
    static Duration retryAfter(HttpHeaders headers) {
        String value = headers.firstValue("Retry-After").map(String::strip).orElse("");
        if (value.isEmpty()) {
            return null;
        }
        if (value.chars().allMatch(Character::isDigit)) {
            try {
                return Duration.ofSeconds(Long.parseLong(value));
            } catch (NumberFormatException tooLong) {
                return null;
            }
        }
        try {
            Duration until = Duration.between(Instant.now(), ZonedDateTime.parse(value, DateTimeFormatter.RFC_1123_DATE_TIME).toInstant());
            return until.isNegative() ? Duration.ZERO : until;
        } catch (DateTimeParseException notADate) {
            return null;
        }
    }

    private ClientException unreachable(IOException e) {
        return ClientException.unreachable("cannot reach the coordinator at " + baseUrl + ": " + describe(e), e);
    }

    private String describe(IOException e) {
        for (Throwable cause = e; cause != null; cause = cause.getCause()) {
            if (cause instanceof UnresolvedAddressException || cause instanceof UnknownHostException) {
                String host = null;
                try {
                    host = URI.create(baseUrl).getHost();
                } catch (IllegalArgumentException notAUri) {
                    // the message without the host
                }
                return "cannot resolve host " + (host == null ? "(unknown)" : host);
            }
        }
        if (e instanceof java.net.http.HttpConnectTimeoutException) {
            return "no connection within " + seconds(CONNECT_TIMEOUT);
        }
        if (e instanceof java.net.http.HttpTimeoutException) {
            return "no answer within " + seconds(requestTimeout);
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
        return error(status, text, null);
    }

    private static ClientException.ApiError error(int status, String text, Duration retryAfter) {
        JsonNode body = parse(text);
        List<String> fields = new ArrayList<>();
        if (body.isObject() && body.path("message").isTextual()) {
            for (JsonNode field : body.path("errors")) {
                fields.add(field.path("field").asText() + ": " + field.path("message").asText());
            }
            return new ClientException.ApiError(status, body.path("error").asText(null), body.path("message").asText(), fields, retryAfter);
        }
        String shown = text.strip();
        if (shown.isEmpty()) {
            shown = "HTTP " + status + " with no body";
        } else {
            shown = Format.truncate(shown, 501);
        }
        return new ClientException.ApiError(status, null, shown, fields, retryAfter);
    }

    private static String seconds(Duration d) {
        return d.toMillis() % 1000 == 0 ? d.toSeconds() + " s" : d.toMillis() + " ms";
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
