package dev.kage.testing;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.Executors;
import java.util.function.Function;

/**
 * A model server on loopback that plays OpenAI's chat completions ({@code /v1/chat/completions}) and Responses API
 * ({@code /v1/responses}, server-sent events, as the real {@code codex} CLI reads them), and
 * Anthropic's Messages API ({@code /v1/messages}, plain JSON or, for {@code "stream": true}, its server-sent
 * events) with answers a test scripts: text, tool calls, usage, delays, 429/529 with {@code Retry-After} and
 * rate-limit headers. The real {@code claude} and {@code codex} CLIs run against it (REAL-AGENTS.md). Each request's arrival is
 * recorded (server clock, µs). Thread-safe.
 */
public final class ScriptedModelServer implements AutoCloseable {
    /** The status of {@link Reply#dropConnection()}: no answer was sent. */
    public static final int DROPPED = -1;

    /**
     * One scripted answer: text, or (Anthropic only) a call of tool {@code toolName} with {@code toolInput} (a JSON
     * object) and {@code stop_reason: tool_use}.
     */
    public record Reply(int status, Map<String, String> headers, String text, long inputTokens, long outputTokens, Duration delay,
                        String toolName, String toolInput) {

        public static Reply ok(String text, long inputTokens, long outputTokens) {
            return new Reply(200, Map.of(), text, inputTokens, outputTokens, Duration.ZERO, null, null);
        }

        /** A tool call, e.g. {@code toolUse("Write", "{\"file_path\": \"/abs/f.md\", \"content\": \"hi\"}", 100, 20)}. */
        public static Reply toolUse(String toolName, String toolInput, long inputTokens, long outputTokens) {
            return new Reply(200, Map.of(), null, inputTokens, outputTokens, Duration.ZERO, toolName, toolInput);
        }

        /** A 429 with {@code Retry-After: seconds}. */
        public static Reply tooManyRequests(int retryAfterSeconds) {
            return new Reply(429, Map.of("retry-after", Integer.toString(retryAfterSeconds)), null, 0, 0, Duration.ZERO, null, null);
        }

        /**
         * No answer at all: the server reads the whole request, then closes the connection without a status line (a
         * provider or proxy that dropped the call after it arrived).
         */
        public static Reply dropConnection() {
            return new Reply(DROPPED, Map.of(), null, 0, 0, Duration.ZERO, null, null);
        }

        /** An error answer with {@code status} (e.g. 500, 502) and the provider's error body, no usage. */
        public static Reply failed(int status) {
            return new Reply(status, Map.of(), null, 0, 0, Duration.ZERO, null, null);
        }

        public static Reply overloaded() {
            return new Reply(529, Map.of(), null, 0, 0, Duration.ZERO, null, null);
        }

        public Reply withHeaders(Map<String, String> more) {
            Map<String, String> all = new LinkedHashMap<>(headers);
            all.putAll(more);
            return new Reply(status, all, text, inputTokens, outputTokens, delay, toolName, toolInput);
        }

        public Reply after(Duration wait) {
            return new Reply(status, headers, text, inputTokens, outputTokens, wait, toolName, toolInput);
        }
    }

    /** A request as it arrived. */
    public record Request(long arrivedMicros, String path, String body, Map<String, String> headers, int answeredStatus) {
    }

    private final HttpServer server;
    private final Deque<Reply> script = new ConcurrentLinkedDeque<>();
    private final List<Request> requests = new ArrayList<>();
    private volatile Function<Integer, Reply> fallback = n -> Reply.ok("done", 12, 5);
    private volatile java.util.function.BiFunction<Integer, String, Reply> responder;

    private ScriptedModelServer(HttpServer server) {
        this.server = server;
    }

    public static ScriptedModelServer start() {
        try {
            HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64);
            ScriptedModelServer scripted = new ScriptedModelServer(server);
            server.createContext("/", scripted::handle);
            server.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
            server.start();
            return scripted;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Base URL for an {@code openai-compatible} agent ({@code .../v1}). */
    public String openAiBaseUrl() {
        return "http://127.0.0.1:" + server.getAddress().getPort() + "/v1";
    }

    /** Base URL for an {@code anthropic} agent. */
    public String anthropicBaseUrl() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    /** Answers the next requests with these, in order; then the fallback. */
    public ScriptedModelServer then(Reply... replies) {
        script.addAll(List.of(replies));
        return this;
    }

    /** Answers every unscripted request with {@code reply(n)}, n counting all requests from 1. */
    public ScriptedModelServer otherwise(Function<Integer, Reply> reply) {
        fallback = reply;
        return this;
    }

    /**
     * Answers every unscripted request with {@code reply(n, body)}, n counting all requests from 1, body the
     * request's JSON: for a conversation whose answer depends on what the agent sent (a tool call naming a file in
     * its working directory, then text once the tool's result comes back). Takes precedence over {@link #otherwise}.
     */
    public ScriptedModelServer answering(java.util.function.BiFunction<Integer, String, Reply> reply) {
        responder = reply;
        return this;
    }

    /**
     * Sends a few requests to itself and forgets them, so the server's own first-request costs (class
     * loading, thread start) do not delay the arrivals a test measures.
     */
    public ScriptedModelServer warmUp() {
        java.net.http.HttpClient client = java.net.http.HttpClient.newHttpClient();
        for (int i = 0; i < 20; i++) {
            try {
                client.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(openAiBaseUrl() + "/warm-up"))
                                .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{}")).build(),
                        java.net.http.HttpResponse.BodyHandlers.discarding());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        synchronized (requests) {
            requests.clear();
        }
        return this;
    }

    public List<Request> requests() {
        synchronized (requests) {
            return List.copyOf(requests);
        }
    }

    private void handle(HttpExchange exchange) throws IOException {
        long arrived = micros();
        String body = new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
        Map<String, String> headers = new LinkedHashMap<>();
        exchange.getRequestHeaders().forEach((name, values) -> headers.put(name.toLowerCase(), String.join(",", values)));
        if (exchange.getRequestURI().getPath().endsWith("/warm-up")) {
            exchange.sendResponseHeaders(204, -1);
            exchange.close();
            return;
        }
        Reply reply;
        synchronized (requests) {
            Reply next = script.pollFirst();
            var answer = responder;
            reply = next != null ? next : answer != null ? answer.apply(requests.size() + 1, body) : fallback.apply(requests.size() + 1);
            requests.add(new Request(arrived, exchange.getRequestURI().getPath(), body, headers, reply.status()));
        }
        if (reply.delay().isPositive()) {
            // A scripted delay: the server plays a model that takes this long to answer.
            try {
                Thread.sleep(reply.delay());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (reply.status() == DROPPED) {
            // Closing an exchange before its response headers closes the connection: the client reads no answer.
            exchange.close();
            return;
        }
        boolean anthropic = exchange.getRequestURI().getPath().endsWith("/messages");
        java.util.regex.Matcher model = java.util.regex.Pattern.compile("\"model\"\\s*:\\s*\"([^\"]*)\"").matcher(body);
        String modelName = model.find() ? model.group(1) : "scripted";
        if (exchange.getRequestURI().getPath().endsWith("/responses") && reply.status() / 100 == 2) {
            responses(exchange, reply);
            return;
        }
        if (anthropic && reply.status() / 100 == 2 && body.matches("(?s).*\"stream\"\\s*:\\s*true.*")) {
            stream(exchange, reply, modelName);
            return;
        }
        String json = reply.status() / 100 == 2 ? success(anthropic, reply, modelName) : error(anthropic, reply);
        byte[] bytes = json.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().add("Content-Type", "application/json");
        reply.headers().forEach((name, value) -> exchange.getResponseHeaders().add(name, value));
        exchange.sendResponseHeaders(reply.status(), bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    /** The Messages API's server-sent events for one answer: one content block, text or a tool call. */
    private static void stream(HttpExchange exchange, Reply reply, String model) throws IOException {
        exchange.getResponseHeaders().add("Content-Type", "text/event-stream");
        reply.headers().forEach((name, value) -> exchange.getResponseHeaders().add(name, value));
        exchange.sendResponseHeaders(200, 0);
        boolean tool = reply.toolName() != null;
        String block = tool ? "{\"type\":\"tool_use\",\"id\":\"toolu_" + System.nanoTime() + "\",\"name\":" + quote(reply.toolName())
                + ",\"input\":{}}" : "{\"type\":\"text\",\"text\":\"\"}";
        String delta = tool ? "{\"type\":\"input_json_delta\",\"partial_json\":" + quote(reply.toolInput()) + "}"
                : "{\"type\":\"text_delta\",\"text\":" + quote(reply.text()) + "}";
        try (OutputStream out = exchange.getResponseBody()) {
            event(out, "message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_" + System.nanoTime()
                    + "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":" + quote(model) + ",\"content\":[],"
                    + "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":" + reply.inputTokens()
                    + ",\"output_tokens\":1}}}");
            event(out, "content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":" + block + "}");
            event(out, "content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":" + delta + "}");
            event(out, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
            event(out, "message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"" + (tool ? "tool_use" : "end_turn")
                    + "\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":" + reply.outputTokens() + "}}");
            event(out, "message_stop", "{\"type\":\"message_stop\"}");
        }
    }

    /**
     * OpenAI's Responses API as the real {@code codex} CLI reads it (server-sent events): one output item, a message
     * or a function call ({@code toolName} with {@code toolInput} as its arguments), then the usage.
     */
    private static void responses(HttpExchange exchange, Reply reply) throws IOException {
        exchange.getResponseHeaders().add("Content-Type", "text/event-stream");
        reply.headers().forEach((name, value) -> exchange.getResponseHeaders().add(name, value));
        exchange.sendResponseHeaders(200, 0);
        long id = System.nanoTime();
        String item = reply.toolName() != null
                ? "{\"type\":\"function_call\",\"id\":\"fc_" + id + "\",\"call_id\":\"call_" + id + "\",\"name\":"
                        + quote(reply.toolName()) + ",\"arguments\":" + quote(reply.toolInput()) + ",\"status\":\"completed\"}"
                : "{\"type\":\"message\",\"id\":\"msg_" + id + "\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":"
                        + "[{\"type\":\"output_text\",\"text\":" + quote(reply.text()) + ",\"annotations\":[]}]}";
        try (OutputStream out = exchange.getResponseBody()) {
            event(out, "response.created", "{\"type\":\"response.created\",\"response\":{\"id\":\"resp_" + id + "\"}}");
            event(out, "response.output_item.done", "{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":" + item + "}");
            event(out, "response.completed", "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_" + id + "\",\"usage\":"
                    + "{\"input_tokens\":" + reply.inputTokens() + ",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":"
                    + reply.outputTokens() + ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":"
                    + (reply.inputTokens() + reply.outputTokens()) + "}}}");
        }
    }

    private static void event(OutputStream out, String name, String data) throws IOException {
        out.write(("event: " + name + "\ndata: " + data + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    private static String success(boolean anthropic, Reply reply, String model) {
        String text = quote(reply.text());
        if (anthropic) {
            String content = reply.toolName() != null
                    ? "{\"type\":\"tool_use\",\"id\":\"toolu_" + System.nanoTime() + "\",\"name\":" + quote(reply.toolName())
                            + ",\"input\":" + reply.toolInput() + "}"
                    : "{\"type\":\"text\",\"text\":" + text + "}";
            return "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":" + quote(model) + ",\"content\":["
                    + content + "],\"stop_reason\":\"" + (reply.toolName() != null ? "tool_use" : "end_turn")
                    + "\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":" + reply.inputTokens()
                    + ",\"output_tokens\":" + reply.outputTokens() + "}}";
        }
        return "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                + "\"content\":" + text + "},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":" + reply.inputTokens()
                + ",\"completion_tokens\":" + reply.outputTokens() + ",\"total_tokens\":" + (reply.inputTokens() + reply.outputTokens()) + "}}";
    }

    private static String error(boolean anthropic, Reply reply) {
        String type = reply.status() == 429 ? "rate_limit_error" : reply.status() == 529 ? "overloaded_error" : "api_error";
        if (anthropic) {
            return "{\"type\":\"error\",\"error\":{\"type\":\"" + type + "\",\"message\":\"scripted " + reply.status() + "\"}}";
        }
        return "{\"error\":{\"message\":\"scripted " + reply.status() + "\",\"type\":\"" + type + "\"}}";
    }

    private static String quote(String text) {
        return "\"" + (text == null ? "" : text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")) + "\"";
    }

    private static long micros() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000 + now.getNano() / 1_000;
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
