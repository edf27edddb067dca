package dev.kage.worker.metrics;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.kage.config.ConfigException;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The worker's scrape endpoint: {@code GET /prometheus} on {@code KAGE_WORKER_METRICS_PORT}, the Prometheus text
 * format of {@link PrometheusMeterRegistry#scrape()}. Same path as the coordinator's, so one scrape config fits both.
 *
 * <p>Built on the JDK's {@code com.sun.net.httpserver} rather than a Micronaut HTTP server: the worker has no other
 * HTTP surface, and one read-only path does not justify Netty, a second event loop and the HTTP server's start-up
 * time in every worker. One daemon thread serves requests (a scrape is a string render of in-memory meters).
 * Thread-safe; {@link #start()} once, {@link #stop()} once.
 */
public final class MetricsServer {
    public static final String PATH = "/prometheus";
    static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

    private final PrometheusMeterRegistry registry;
    private final int port;
    private HttpServer server;
    private ExecutorService executor;

    /** @param port the port to listen on, all interfaces; 0 picks a free one (tests) */
    public MetricsServer(PrometheusMeterRegistry registry, int port) {
        this.registry = registry;
        this.port = port;
    }

    /**
     * @throws ConfigException naming {@code KAGE_WORKER_METRICS_PORT} when the port cannot be bound (in use)
     */
    public synchronized void start() {
        if (server != null) {
            return;
        }
        try {
            server = HttpServer.create(new InetSocketAddress(port), 16);
        } catch (BindException e) {
            throw new ConfigException(WorkerMetricsSettings.VARIABLE + "=" + port + ": the port is in use (" + e.getMessage()
                    + "); give each worker on a machine its own port, or 0 for no metrics endpoint");
        } catch (IOException e) {
            throw new ConfigException(WorkerMetricsSettings.VARIABLE + "=" + port + ": cannot listen (" + e.getMessage() + ")");
        }
        executor = Executors.newSingleThreadExecutor(Thread.ofPlatform().daemon().name("kage-metrics-http").factory());
        server.setExecutor(executor);
        server.createContext("/", this::handle);
        server.start();
    }

    /** The port listened on (the one picked when constructed with 0); -1 before {@link #start()}. */
    public synchronized int port() {
        return server == null ? -1 : server.getAddress().getPort();
    }

    public synchronized void stop() {
        if (server != null) {
            server.stop(0);
            executor.shutdownNow();
            server = null;
        }
    }

    private void handle(HttpExchange exchange) throws IOException {
        try (exchange) {
            if (!PATH.equals(exchange.getRequestURI().getPath())) {
                send(exchange, 404, "text/plain; charset=utf-8", "not found: the metrics are at " + PATH + "\n");
                return;
            }
            if (!"GET".equals(exchange.getRequestMethod()) && !"HEAD".equals(exchange.getRequestMethod())) {
                exchange.getResponseHeaders().add("Allow", "GET, HEAD");
                send(exchange, 405, "text/plain; charset=utf-8", "method not allowed\n");
                return;
            }
            send(exchange, 200, CONTENT_TYPE, registry.scrape());
        }
    }

    private static void send(HttpExchange exchange, int status, String contentType, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", contentType);
        boolean head = "HEAD".equals(exchange.getRequestMethod());
        exchange.sendResponseHeaders(status, head ? -1 : bytes.length);
        if (!head) {
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(bytes);
            }
        }
    }
}
