package dev.kage.worker.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Map;
import org.junit.jupiter.api.Test;

class MetricsServerTest {

    @Test
    void thePortIsOffByDefaultAndABadValueNamesTheVariable() {
        assertThat(WorkerMetricsSettings.load(Env.of(Map.of())).enabled()).isFalse();
        assertThat(WorkerMetricsSettings.load(Env.of(Map.of("KAGE_WORKER_METRICS_PORT", "0"))).enabled()).isFalse();
        assertThat(WorkerMetricsSettings.load(Env.of(Map.of("KAGE_WORKER_METRICS_PORT", " 9464 "))).port()).isEqualTo(9464);
        for (String bad : new String[] {"abc", "-1", "65536", "94 64"}) {
            assertThatThrownBy(() -> WorkerMetricsSettings.load(Env.of(Map.of("KAGE_WORKER_METRICS_PORT", bad))))
                    .isInstanceOf(ConfigException.class)
                    .hasMessageStartingWith("KAGE_WORKER_METRICS_PORT=" + bad + ": must be a port number from 1 to 65535");
        }
    }

    @Test
    void servesTheRegistryOnPrometheusAndNothingElse() throws Exception {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        new WorkerMetrics(registry).reclaim("demo");
        MetricsServer server = new MetricsServer(registry, 0);
        server.start();
        try {
            HttpClient http = HttpClient.newHttpClient();
            HttpResponse<String> ok = http.send(get(server, "/prometheus"), HttpResponse.BodyHandlers.ofString());
            assertThat(ok.statusCode()).isEqualTo(200);
            assertThat(ok.body()).contains("kage_reclaims_total{agent=\"demo\"} 1.0");
            assertThat(http.send(get(server, "/metrics"), HttpResponse.BodyHandlers.ofString()).statusCode()).isEqualTo(404);
            HttpResponse<String> post = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/prometheus"))
                    .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
            assertThat(post.statusCode()).isEqualTo(405);
        } finally {
            server.stop();
        }
    }

    @Test
    void aPortInUseStopsStartUpNamingTheVariable() {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        MetricsServer first = new MetricsServer(registry, 0);
        first.start();
        try {
            assertThatThrownBy(() -> new MetricsServer(registry, first.port()).start())
                    .isInstanceOf(ConfigException.class)
                    .hasMessageStartingWith("KAGE_WORKER_METRICS_PORT=" + first.port() + ": the port is in use");
        } finally {
            first.stop();
        }
    }

    private static HttpRequest get(MetricsServer server, String path) {
        return HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + path)).GET().build();
    }
}
