package dev.kage.worker.agent;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.http.HttpHeaders;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

class HttpAgentClientTest {
    private static HttpHeaders headers(Map<String, String> values) {
        return HttpHeaders.of(values.entrySet().stream().collect(java.util.stream.Collectors.toMap(Map.Entry::getKey,
                e -> List.of(e.getValue()))), (name, value) -> true);
    }

    private static String httpDate(Instant at) {
        return DateTimeFormatter.RFC_1123_DATE_TIME.format(at.atOffset(ZoneOffset.UTC));
    }

    @Test
    void absoluteTimesAreReadAgainstTheProvidersClockNotTheWorkers() {
        Instant provider = Instant.parse("2026-11-29T12:00:00Z");
        Instant workerBehind = provider.minus(Duration.ofMinutes(10));
        HttpHeaders anthropic = headers(Map.of("date", httpDate(provider), "anthropic-ratelimit-requests-remaining", "0",
                "anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-reset", provider.plusSeconds(5).toString()));
        Instant now = HttpAgentClient.serverNow(anthropic, workerBehind);
        assertThat(now).isEqualTo(provider);
        assertThat(HttpAgentClient.quota(anthropic, now)).hasValueSatisfying(q ->
                assertThat(q.reset()).as("5 s, not 10 min 5 s").isEqualTo(Duration.ofSeconds(5)));

        HttpHeaders retry = headers(Map.of("date", httpDate(provider), "retry-after", httpDate(provider.plusSeconds(30))));
        assertThat(HttpAgentClient.retryAfter(retry, HttpAgentClient.serverNow(retry, workerBehind)))
                .contains(Duration.ofSeconds(30));
        // Without a Date header, the worker's own clock is all there is.
        assertThat(HttpAgentClient.serverNow(headers(Map.of()), workerBehind)).isEqualTo(workerBehind);
        assertThat(HttpAgentClient.serverNow(headers(Map.of("date", "yesterday")), workerBehind)).isEqualTo(workerBehind);
        // Within two seconds the clocks agree: the worker's, finer than a Date's whole seconds, is kept.
        Instant close = provider.plusMillis(1_400);
        assertThat(HttpAgentClient.serverNow(anthropic, close)).isEqualTo(close);
    }

    @Test
    void aWaitAProviderAsksForIsTakenForADayAtMost() {
        Instant now = Instant.parse("2026-11-29T12:00:00Z");
        assertThat(HttpAgentClient.retryAfter(headers(Map.of("retry-after", httpDate(now.plus(Duration.ofDays(400))))), now))
                .contains(Duration.ofDays(1));
        assertThat(HttpAgentClient.retryAfter(headers(Map.of("retry-after", "99999999")), now)).contains(Duration.ofDays(1));
        assertThat(HttpAgentClient.retryAfter(headers(Map.of("retry-after", "2.5")), now)).contains(Duration.ofMillis(2_500));
    }

    @TempDir
    java.nio.file.Path dir;

    /** An openai-compatible agent calling {@code server}. */
    private dev.kage.agent.AgentConfig agentOf(com.sun.net.httpserver.HttpServer server) throws java.io.IOException {
        java.nio.file.Path file = dir.resolve("agents.yml");
        java.nio.file.Files.writeString(file, """
                agents:
                  local:
                    type: openai-compatible
                    base_url: http://127.0.0.1:%d/v1
                    model: m1
                """.formatted(server.getAddress().getPort()));
        return dev.kage.agent.AgentCatalog.load(file).require("local");
    }

    private static com.sun.net.httpserver.HttpServer serve(com.sun.net.httpserver.HttpHandler handler) throws java.io.IOException {
        var server = com.sun.net.httpserver.HttpServer.create(new java.net.InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", handler);
        server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
        server.start();
        return server;
    }

    @Test
    @Timeout(60)
    void aReplyWhoseBodyTricklesPastTheTimeoutIsAbandonedAtTheTimeout() throws Exception {
        // Headers at once, then a byte every 200 ms for ten minutes: the request's own timeout covers the headers only.
        java.util.concurrent.CountDownLatch closed = new java.util.concurrent.CountDownLatch(1);
        var server = serve(exchange -> {
            exchange.getRequestBody().readAllBytes();
            exchange.sendResponseHeaders(200, 0);
            try (var out = exchange.getResponseBody()) {
                for (int i = 0; i < 3_000; i++) {
                    out.write(' ');
                    out.flush();
                    // The fixture provider's trickle itself (the behaviour under test), not a wait for a condition.
                    Thread.sleep(200);
                }
            } catch (java.io.IOException | InterruptedException e) {
                closed.countDown();
            }
        });
        try {
            HttpAgentClient.Reply reply = new HttpAgentClient().call(agentOf(server), "hi", Duration.ofSeconds(2));
            assertThat(reply.timedOut()).isTrue();
            assertThat(closed.await(30, java.util.concurrent.TimeUnit.SECONDS)).as("the connection was given up").isTrue();
        } finally {
            server.stop(0);
        }
    }

    @Test
    @Timeout(60)
    void aFloodedReplyIsCutAndTheRestIsNeverRead() throws Exception {
        // 64 MiB of body: the client keeps the first MAX_BODY_BYTES and closes the connection; the server's writes fail.
        long total = 64L << 20;
        java.util.concurrent.atomic.AtomicLong written = new java.util.concurrent.atomic.AtomicLong();
        java.util.concurrent.CountDownLatch done = new java.util.concurrent.CountDownLatch(1);
        var server = serve(exchange -> {
            exchange.getRequestBody().readAllBytes();
            exchange.sendResponseHeaders(200, total);
            byte[] chunk = new byte[64 << 10];
            java.util.Arrays.fill(chunk, (byte) 'x');
            try (var out = exchange.getResponseBody()) {
                while (written.get() < total) {
                    out.write(chunk);
                    written.addAndGet(chunk.length);
                }
            } catch (java.io.IOException e) {
                // the client closed the connection
            } finally {
                done.countDown();
            }
        });
        try {
            HttpAgentClient.Reply reply = new HttpAgentClient().call(agentOf(server), "hi", Duration.ofSeconds(30));
            assertThat(reply.status()).isEqualTo(200);
            assertThat(reply.body()).hasSize(HttpAgentClient.MAX_BODY_CHARS);
            assertThat(done.await(30, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
            assertThat(written.get()).as("bytes the server got written before the client closed").isLessThan(total);
        } finally {
            server.stop(0);
        }
    }

    @Test
    void aUsageWithoutThePromptsOrTheAnswersCountIsCountedForTheSideItLacks() throws Exception {
        var server = serve(exchange -> { });
        dev.kage.agent.AgentConfig agent;
        try {
            agent = agentOf(server);
        } finally {
            server.stop(0);
        }
        String prompt = "Write a haiku about queues that never lose a job, and explain each line.";
        String answer = "Streams hold every job / acked only when it is done / none runs twice at once";
        long promptTokens = dev.kage.tokens.TokenCounter.count(agent.encoding(), prompt);
        long answerTokens = dev.kage.tokens.TokenCounter.count(agent.encoding(), answer);
        String choices = "\"choices\": [{\"message\": {\"content\": \"" + answer + "\"}}]";
        java.util.function.Function<String, dev.kage.tokens.Usage> usage = json -> HttpAgentClient.report(agent, prompt,
                new HttpAgentClient.Reply(200, "{" + choices + ", \"usage\": " + json + "}", headers(Map.of()), Duration.ZERO)).usage();

        dev.kage.tokens.Usage full = usage.apply("{\"prompt_tokens\": 30, \"completion_tokens\": 20}");
        assertThat(List.of(full.inputTokens(), full.outputTokens())).containsExactly(30L, 20L);
        assertThat(full.source()).isEqualTo(dev.kage.tokens.Usage.UsageSource.AGENT);
        dev.kage.tokens.Usage noPrompt = usage.apply("{\"completion_tokens\": 20}");
        assertThat(List.of(noPrompt.inputTokens(), noPrompt.outputTokens())).containsExactly(promptTokens, 20L);
        assertThat(noPrompt.source()).isEqualTo(dev.kage.tokens.Usage.UsageSource.TOKENIZER);
        dev.kage.tokens.Usage noAnswer = usage.apply("{\"prompt_tokens\": 30, \"completion_tokens\": null}");
        assertThat(List.of(noAnswer.inputTokens(), noAnswer.outputTokens())).containsExactly(30L, answerTokens);
        dev.kage.tokens.Usage cachedNoPrompt = usage.apply("{\"completion_tokens\": 20, \"prompt_tokens_details\": {\"cached_tokens\": 5}}");
        assertThat(List.of(cachedNoPrompt.inputTokens(), cachedNoPrompt.cacheReadTokens())).as("the cached part charged once")
                .containsExactly(promptTokens - 5, 5L);
        assertThat(promptTokens).isGreaterThan(5);
        assertThat(answerTokens).isPositive();
    }
}
