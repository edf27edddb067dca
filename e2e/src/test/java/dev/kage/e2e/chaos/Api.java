package dev.kage.e2e.chaos;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The public HTTP API of one coordinator as a scenario uses it: every answer's status is tallied (per label, so a
 * scenario can tell which call answered what), and a call that gets no answer within 10 s counts as a timeout.
 * Thread-safe.
 */
final class Api {
    static final int TIMEOUT = -1;
    static final int NO_CONNECTION = -2;

    private final int port;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final Map<String, Map<Integer, AtomicLong>> statuses = new ConcurrentHashMap<>();
    private final AtomicLong slowestNanos = new AtomicLong();

    Api(int port) {
        this.port = port;
    }

    /** Files an answer got through another instance under {@code label}, e.g. by the phase of a fault it fell in. */
    void file(String label, Answer answer) {
        statuses.computeIfAbsent(label, l -> new ConcurrentHashMap<>()).computeIfAbsent(answer.status(), s -> new AtomicLong())
                .incrementAndGet();
        slowestNanos.accumulateAndGet(answer.nanos(), Math::max);
    }

    int port() {
        return port;
    }

    /** An answer, or a status of {@link #TIMEOUT} / {@link #NO_CONNECTION} with an empty body. */
    record Answer(int status, String body, HttpResponse<String> response, long nanos) {
        Answer(int status, String body, HttpResponse<String> response) {
            this(status, body, response, 0);
        }
    }

    Answer get(String label, String path, String key) throws InterruptedException {
        return send(label, request(path, key).GET());
    }

    Answer post(String label, String path, String key, String body) throws InterruptedException {
        return send(label, request(path, key).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)));
    }

    private HttpRequest.Builder request(String path, String key) {
        HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .timeout(Duration.ofSeconds(10));
        if (key != null) {
            builder.header("X-API-Key", key);
        }
        return builder;
    }

    private Answer send(String label, HttpRequest.Builder request) throws InterruptedException {
        int status;
        Answer answer;
        long started = System.nanoTime();
        try {
            HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
            status = response.statusCode();
            answer = new Answer(status, response.body(), response, System.nanoTime() - started);
        } catch (HttpTimeoutException e) {
            status = TIMEOUT;
            answer = new Answer(status, "", null, System.nanoTime() - started);
        } catch (IOException e) {
            status = NO_CONNECTION;
            answer = new Answer(status, "", null, System.nanoTime() - started);
        }
        long took = System.nanoTime() - started;
        slowestNanos.accumulateAndGet(took, Math::max);
        statuses.computeIfAbsent(label, l -> new ConcurrentHashMap<>()).computeIfAbsent(status, s -> new AtomicLong())
                .incrementAndGet();
        return answer;
    }

    /** Answers with a status from 500 to 599, over every label. */
    long serverErrors() {
        return count(s -> s >= 500);
    }

    /** Answers with a status from 500 to 599 other than 503, over every label. */
    long serverErrorsBut503() {
        return count(s -> s >= 500 && s != 503);
    }

    /** The longest any call took to be answered (or to time out), in milliseconds. */
    long slowestMillis() {
        return slowestNanos.get() / 1_000_000;
    }

    long calls() {
        return count(s -> true);
    }

    long count(java.util.function.IntPredicate status) {
        return statuses.values().stream().flatMap(m -> m.entrySet().stream()).filter(e -> status.test(e.getKey()))
                .mapToLong(e -> e.getValue().get()).sum();
    }

    /** Status counts of one label, e.g. {@code {503=40}}. */
    Map<Integer, Long> of(String label) {
        Map<Integer, Long> out = new TreeMap<>();
        statuses.getOrDefault(label, Map.of()).forEach((s, n) -> out.put(s, n.get()));
        return out;
    }

    /** Every label's status counts, e.g. {@code submit{202=3, 503=40}}. */
    String summary() {
        StringBuilder out = new StringBuilder();
        new TreeMap<>(statuses).forEach((label, m) -> out.append(out.isEmpty() ? "" : " ").append(label)
                .append(of(label).toString().replace(" ", "")));
        return out.toString();
    }
}
