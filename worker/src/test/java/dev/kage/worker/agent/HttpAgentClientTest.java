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
}
