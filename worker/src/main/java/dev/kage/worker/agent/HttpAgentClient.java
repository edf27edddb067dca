package dev.kage.worker.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.tokens.TokenCounter;
import dev.kage.tokens.Usage;
import dev.kage.tokens.Usage.UsageSource;
import java.io.IOException;
import java.math.BigDecimal;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Calls the HTTP agent types: OpenAI-compatible chat completions and Anthropic's Messages API. The
 * prompt travels in a JSON body, never in a URL or a header; the key comes from the variable the agent
 * names and only goes into the request's auth header. Thread-safe.
 */
public final class HttpAgentClient {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Replies kept in full up to this many characters (a flood is cut). */
    static final int MAX_BODY_CHARS = 1_000_000;
    private static final Pattern GO_DURATION = Pattern.compile("(\\d+(?:\\.\\d+)?)(ms|h|m|s)");

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10))
            .version(HttpClient.Version.HTTP_1_1).build();

    /**
     * One call's reply.
     *
     * @param status   HTTP status, 0 when no answer came (timeout)
     * @param body     the body, cut at {@link #MAX_BODY_CHARS}
     * @param headers  the reply's headers
     * @param duration wall time of the call
     */
    public record Reply(int status, String body, HttpHeaders headers, Duration duration) {
        public boolean timedOut() {
            return status == 0;
        }

        /** 429, or Anthropic's 529 "overloaded", or a 503 with Retry-After: the provider asks to slow down. */
        public boolean rateLimited() {
            return status == 429 || status == 529 || (status == 503 && headers.firstValue("retry-after").isPresent());
        }
    }

    /**
     * What the provider's rate-limit headers say about its own request quota.
     *
     * @param remaining requests left in its window
     * @param limit     its limit
     * @param reset     until its window resets, zero when not given
     */
    public record Quota(long remaining, long limit, Duration reset) {
    }

    /**
     * Sends the prompt and waits for the answer, at most {@code timeout}.
     *
     * @throws IOException when the endpoint cannot be reached
     */
    public Reply call(AgentConfig agent, String prompt, Duration timeout) throws IOException, InterruptedException {
        return call(agent, prompt, timeout, () -> { });
    }

    /**
     * The agent's API key from {@code api_key_env}, without the whitespace around it (a key read from a file, as a
     * Kubernetes secret is, ends in a newline, which no HTTP header may hold).
     *
     * @return empty when the agent names no variable, or it is unset or blank
     * @throws dev.kage.config.ConfigException naming the variable, never its value, when what is left is no valid header
     *                                         value (a control character or a line break inside it, or a non-ASCII one)
     */
    public static Optional<String> apiKey(AgentConfig.HttpEndpoint endpoint, java.util.function.UnaryOperator<String> env) {
        if (endpoint.apiKeyEnv() == null) {
            return Optional.empty();
        }
        String value = env.apply(endpoint.apiKeyEnv());
        if (value == null || value.isBlank()) {
            return Optional.empty();
        }
        String key = value.strip();
        for (int i = 0; i < key.length(); i++) {
            char c = key.charAt(i);
            if (c < 0x20 || c >= 0x7f) {
                throw new dev.kage.config.ConfigException(endpoint.apiKeyEnv() + " (api_key_env) holds a character no HTTP header "
                        + "may carry (a line break, a control or a non-ASCII character) at position " + i
                        + "; its value is not shown");
            }
        }
        return Optional.of(key);
    }

    /**
     * As {@link #call(AgentConfig, String, Duration)}, calling {@code onSend} once, when the client has
     * taken the whole request body to write on an open connection: the moment the provider is about to see
     * the call.
     */
    public Reply call(AgentConfig agent, String prompt, Duration timeout, Runnable onSend) throws IOException, InterruptedException {
        AgentConfig.HttpEndpoint endpoint = agent.endpoint();
        ObjectNode body = JSON.createObjectNode();
        body.put("model", agent.model());
        body.put("max_tokens", endpoint.maxTokens());
        ObjectNode message = body.putArray("messages").addObject();
        message.put("role", "user");
        message.put("content", prompt);
        HttpRequest.Builder request = HttpRequest.newBuilder()
                .timeout(timeout)
                .header("Content-Type", "application/json")
                .POST(new SendingBody(HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body), StandardCharsets.UTF_8),
                        onSend));
        String key;
        try {
            key = apiKey(endpoint, System::getenv).orElse(null);
        } catch (dev.kage.config.ConfigException e) {
            // Checked at start-up; still, never let the value reach an exception's message (the JDK's names it whole).
            throw new IOException(e.getMessage());
        }
        if (agent.type() == AgentType.ANTHROPIC) {
            request.uri(URI.create(endpoint.baseUrl() + "/v1/messages")).header("anthropic-version", "2023-06-01");
            if (key != null) {
                request.header("x-api-key", key);
            }
        } else {
            request.uri(URI.create(endpoint.baseUrl() + "/chat/completions"));
            if (key != null) {
                request.header("Authorization", "Bearer " + key);
            }
        }
        long started = System.nanoTime();
        HttpRequest built = request.build();
        // The request's timeout covers the wait for the reply's headers only (JDK-8208693): a provider, or a proxy, that
        // answers its headers and then trickles the body held the job past its timeout, for ever. So the whole exchange,
        // body included, is waited for at most the timeout, and abandoned past it.
        java.util.concurrent.CompletableFuture<HttpResponse<String>> exchange =
                http.sendAsync(built, info -> new CappedBody(MAX_BODY_BYTES));
        try {
            HttpResponse<String> response = exchange.get(timeout.toNanos(), java.util.concurrent.TimeUnit.NANOSECONDS);
            String text = response.body();
            if (text.length() > MAX_BODY_CHARS) {
                text = text.substring(0, MAX_BODY_CHARS);
            }
            return new Reply(response.statusCode(), text, response.headers(), Duration.ofNanos(System.nanoTime() - started));
        } catch (java.util.concurrent.TimeoutException e) {
            exchange.cancel(true);
            return timedOut(started);
        } catch (InterruptedException e) {
            exchange.cancel(true);
            throw e;
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof java.net.http.HttpConnectTimeoutException) {
                // No connection: the call never left.
                throw new IOException("connect timed out", cause);
            }
            if (cause instanceof HttpTimeoutException) {
                return timedOut(started);
            }
            if (cause instanceof IOException io) {
                throw io;
            }
            if (cause instanceof RuntimeException runtime) {
                throw runtime;
            }
            throw new IOException(String.valueOf(cause), cause);
        }
    }

    private static Reply timedOut(long started) {
        return new Reply(0, "", HttpHeaders.of(java.util.Map.of(), (a, b) -> true), Duration.ofNanos(System.nanoTime() - started));
    }

    /** Bytes of a reply's body kept at most (enough for {@link #MAX_BODY_CHARS} characters of any UTF-8). */
    static final int MAX_BODY_BYTES = 4 * MAX_BODY_CHARS;

    /**
     * A reply's body as text, its first {@code limit} bytes kept: past them the body is abandoned (the connection
     * closed), so a flood neither fills the heap nor holds the job while it streams. Used by one exchange's thread at a
     * time, as the client calls a subscriber.
     */
    static final class CappedBody implements HttpResponse.BodySubscriber<String> {
        private final int limit;
        private final java.io.ByteArrayOutputStream kept = new java.io.ByteArrayOutputStream();
        private final java.util.concurrent.CompletableFuture<String> text = new java.util.concurrent.CompletableFuture<>();
        private java.util.concurrent.Flow.Subscription subscription;

        CappedBody(int limit) {
            this.limit = limit;
        }

        @Override
        public java.util.concurrent.CompletionStage<String> getBody() {
            return text;
        }

        @Override
        public void onSubscribe(java.util.concurrent.Flow.Subscription subscription) {
            this.subscription = subscription;
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(java.util.List<java.nio.ByteBuffer> buffers) {
            if (text.isDone()) {
                return;
            }
            for (java.nio.ByteBuffer buffer : buffers) {
                int take = Math.min(buffer.remaining(), limit - kept.size());
                byte[] bytes = new byte[take];
                buffer.get(bytes);
                kept.write(bytes, 0, take);
                if (kept.size() >= limit) {
                    subscription.cancel();
                    onComplete();
                    return;
                }
            }
        }

        @Override
        public void onError(Throwable error) {
            text.completeExceptionally(error);
        }

        @Override
        public void onComplete() {
            text.complete(kept.toString(StandardCharsets.UTF_8));
        }
    }

    /**
     * A body that says when the client has taken all of it to write on an open connection: the moment the
     * provider is about to see the call (a late signal only holds the permit a little longer).
     */
    private static final class SendingBody implements HttpRequest.BodyPublisher {
        private final HttpRequest.BodyPublisher body;
        private final Runnable onSend;
        private final java.util.concurrent.atomic.AtomicBoolean sent = new java.util.concurrent.atomic.AtomicBoolean();

        SendingBody(HttpRequest.BodyPublisher body, Runnable onSend) {
            this.body = body;
            this.onSend = onSend;
        }

        @Override
        public long contentLength() {
            return body.contentLength();
        }

        @Override
        public void subscribe(java.util.concurrent.Flow.Subscriber<? super java.nio.ByteBuffer> subscriber) {
            body.subscribe(new java.util.concurrent.Flow.Subscriber<java.nio.ByteBuffer>() {
                @Override
                public void onSubscribe(java.util.concurrent.Flow.Subscription subscription) {
                    subscriber.onSubscribe(subscription);
                }

                @Override
                public void onNext(java.nio.ByteBuffer item) {
                    subscriber.onNext(item);
                }

                @Override
                public void onError(Throwable error) {
                    subscriber.onError(error);
                }

                @Override
                public void onComplete() {
                    subscriber.onComplete();
                    if (sent.compareAndSet(false, true)) {
                        onSend.run();
                    }
                }
            });
        }
    }

    /** The answer and usage of a successful reply; usage counted with jtokkit when the reply has none. */
    public static AgentReport report(AgentConfig agent, String prompt, Reply reply) {
        JsonNode root;
        try {
            root = JSON.readTree(reply.body());
        } catch (IOException e) {
            root = JSON.createObjectNode();
        }
        String answer;
        long input;
        long output;
        long cacheRead = 0;
        long cacheWrite = 0;
        JsonNode usage;
        if (agent.type() == AgentType.ANTHROPIC) {
            StringBuilder text = new StringBuilder();
            for (JsonNode block : root.path("content")) {
                if ("text".equals(block.path("type").asText())) {
                    text.append(block.path("text").asText());
                }
            }
            answer = text.toString();
            usage = root.path("usage");
            input = usage.path("input_tokens").asLong();
            output = usage.path("output_tokens").asLong();
            cacheRead = usage.path("cache_read_input_tokens").asLong();
            cacheWrite = usage.path("cache_creation_input_tokens").asLong();
        } else {
            answer = root.path("choices").path(0).path("message").path("content").asText("");
            usage = root.path("usage");
            long prompt0 = usage.path("prompt_tokens").asLong();
            cacheRead = usage.path("prompt_tokens_details").path("cached_tokens").asLong();
            input = prompt0 - cacheRead;
            output = usage.path("completion_tokens").asLong();
        }
        if (!usage.isObject()) {
            input = TokenCounter.count(agent.encoding(), prompt);
            output = TokenCounter.count(agent.encoding(), answer);
            BigDecimal cost = agent.prices().cost(input, output, 0, 0);
            return new AgentReport(answer, false, new Usage(input, output, 0, 0, cost, UsageSource.TOKENIZER), root.path("id").asText(null));
        }
        // A usage object without the prompt's or the answer's count (a proxy that passes on part of it) billed that side
        // as zero tokens, and the hold settled to it: the side it lacks is counted here instead.
        String inputField = agent.type() == AgentType.ANTHROPIC ? "input_tokens" : "prompt_tokens";
        String outputField = agent.type() == AgentType.ANTHROPIC ? "output_tokens" : "completion_tokens";
        boolean counted = false;
        if (!usage.path(inputField).isNumber()) {
            // Less what the reply says was read from the cache, which is charged as such.
            input = Math.max(0, TokenCounter.count(agent.encoding(), prompt) - cacheRead);
            counted = true;
        }
        if (!usage.path(outputField).isNumber()) {
            output = TokenCounter.count(agent.encoding(), answer);
            counted = true;
        }
        BigDecimal cost = agent.prices().cost(input, output, cacheRead, cacheWrite);
        return new AgentReport(answer, false, new Usage(input, output, cacheRead, cacheWrite, cost,
                counted ? UsageSource.TOKENIZER : UsageSource.AGENT), root.path("id").asText(null));
    }

    /**
     * The usage a reply's body reports (an error body may carry one: what the provider billed before it failed),
     * or null when it has no {@code usage} object.
     */
    public static Usage reportedUsage(AgentConfig agent, Reply reply) {
        JsonNode root;
        try {
            root = JSON.readTree(reply.body());
        } catch (IOException e) {
            return null;
        }
        if (root == null || !root.path("usage").isObject()) {
            return null;
        }
        return report(agent, "", reply).usage();
    }

    /** The longest wait a provider's header is taken for (a day), whatever it says. */
    static final Duration MAX_WAIT = Duration.ofDays(1);

    /**
     * The provider's clock, from the response's {@code Date} header, else {@code local}: its absolute times (an
     * HTTP-date {@code Retry-After}, Anthropic's {@code -reset}) are read against it, so that a worker whose clock is
     * behind does not pause the whole fleet's group for as long as it is behind. A {@code Date} is whole seconds: within
     * {@link #CLOCKS_AGREE} of {@code local}, the clocks agree and the finer local one is kept.
     */
    public static Instant serverNow(HttpHeaders headers, Instant local) {
        return headers.firstValue("date").flatMap(date -> {
            try {
                return Optional.of(ZonedDateTime.parse(date.strip(), DateTimeFormatter.RFC_1123_DATE_TIME).toInstant());
            } catch (DateTimeParseException e) {
                return Optional.empty();
            }
        }).filter(server -> Duration.between(server, local).abs().compareTo(CLOCKS_AGREE) > 0).orElse(local);
    }

    /** How far a response's {@code Date} may be from the worker's clock for the two to count as agreeing. */
    static final Duration CLOCKS_AGREE = Duration.ofSeconds(2);

    /** {@code Retry-After} as seconds or an HTTP date, a day at most. */
    public static Optional<Duration> retryAfter(HttpHeaders headers, Instant now) {
        Optional<String> value = headers.firstValue("retry-after");
        if (value.isEmpty()) {
            return Optional.empty();
        }
        String raw = value.get().strip();
        try {
            double seconds = Double.parseDouble(raw);
            if (!Double.isFinite(seconds) || seconds < 0) {
                return Optional.empty();
            }
            return Optional.of(Duration.ofMillis((long) Math.min(seconds * 1000, 86_400_000)));
        } catch (NumberFormatException e) {
            try {
                Duration until = Duration.between(now, ZonedDateTime.parse(raw, DateTimeFormatter.RFC_1123_DATE_TIME).toInstant());
                return Optional.of(until.isNegative() ? Duration.ZERO : until.compareTo(MAX_WAIT) > 0 ? MAX_WAIT : until);
            } catch (DateTimeParseException ignored) {
                return Optional.empty();
            }
        }
    }

    /**
     * The request quota the provider reports: OpenAI's {@code x-ratelimit-remaining-requests},
     * {@code x-ratelimit-limit-requests}, {@code x-ratelimit-reset-requests} ("1s", "6m0s") or Anthropic's
     * {@code anthropic-ratelimit-requests-remaining}, {@code -limit}, {@code -reset} (an RFC 3339 time).
     */
    public static Optional<Quota> quota(HttpHeaders headers, Instant now) {
        OptionalLong remaining = number(headers, "x-ratelimit-remaining-requests");
        OptionalLong limit = number(headers, "x-ratelimit-limit-requests");
        Duration reset = headers.firstValue("x-ratelimit-reset-requests").map(HttpAgentClient::goDuration).orElse(Duration.ZERO);
        if (remaining.isEmpty()) {
            remaining = number(headers, "anthropic-ratelimit-requests-remaining");
            limit = number(headers, "anthropic-ratelimit-requests-limit");
            reset = headers.firstValue("anthropic-ratelimit-requests-reset").map(value -> {
                try {
                    Duration until = Duration.between(now, Instant.parse(value.strip()));
                    return until.isNegative() ? Duration.ZERO : until.compareTo(MAX_WAIT) > 0 ? MAX_WAIT : until;
                } catch (DateTimeParseException e) {
                    return Duration.ZERO;
                }
            }).orElse(Duration.ZERO);
        }
        if (remaining.isEmpty() || limit.isEmpty()) {
            return Optional.empty();
        }
        return Optional.of(new Quota(remaining.getAsLong(), limit.getAsLong(), reset));
    }

    private static OptionalLong number(HttpHeaders headers, String name) {
        Optional<String> value = headers.firstValue(name);
        if (value.isEmpty()) {
            return OptionalLong.empty();
        }
        try {
            return OptionalLong.of(Long.parseLong(value.get().strip()));
        } catch (NumberFormatException e) {
            return OptionalLong.empty();
        }
    }

    /** "1s", "6m0s", "20ms", "1h2m3.5s" as OpenAI sends them. */
    static Duration goDuration(String value) {
        Matcher matcher = GO_DURATION.matcher(value.strip());
        double millis = 0;
        boolean any = false;
        while (matcher.find()) {
            any = true;
            double n = Double.parseDouble(matcher.group(1));
            millis += switch (matcher.group(2)) {
                case "h" -> n * 3_600_000;
                case "m" -> n * 60_000;
                case "s" -> n * 1_000;
                default -> n;
            };
        }
        return any ? Duration.ofMillis((long) millis) : Duration.ZERO;
    }
}
