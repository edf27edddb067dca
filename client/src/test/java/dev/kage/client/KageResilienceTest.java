package dev.kage.client;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The client against a stand-in coordinator that misbehaves: answers that are not the API's, streams that break or go
 * silent, 503s with Retry-After, bad keys and URLs. The waits between reconnects run on a {@link FakeClock}, so the
 * time budget is tested without waiting for it; the stream watchdog and the header timeout run on real (short) time.
 */
@Timeout(60)
class KageResilienceTest {
    private static final String KEY = "kb_0123456789abcdefghijklmnopqrstuv";
    private static final String STARTED = "event: job.started\nid: 1-0\ndata: {\"at\":\"2025-01-31T12:00:01Z\",\"agent\":\"demo\","
            + "\"worker\":\"w1\",\"attempt\":\"1\"}\n\n";
    private static final String FINISHED = "event: job.finished\nid: 2-0\ndata: {\"at\":\"2025-01-31T12:00:02Z\",\"agent\":\"demo\","
            + "\"status\":\"failed\",\"task_status\":\"failed\"}\n\n";
    private static final String TASK = """
            {"task_id":"t-1","status":"failed","agents":[{"cli_name":"demo","status":"failed","total_tokens":5,
             "tokens_in":3,"tokens_out":2,"cost_usd":0,"duration_ms":10,"branch":null,"diff_stat":null,
             "error":{"error_type":"CliError","error_message":"exit 1"}}],"errors":[]}""";
    private static final String STARTED_LINE = "12:00:01  demo: started on w1";
    private static final String FINISHED_LINE =
            "12:00:02  demo: finished failed: 5 tokens (in 3, out 2), $0, 10 ms, no changes; CliError: exit 1 (task failed)";
    private static final String FINAL_LINE = "task t-1 failed: 0 of 1 agents completed, 5 tokens, $0";

    interface Route {
        void answer(HttpExchange exchange, int call) throws Exception;
    }

    /** Time that moves only when the client waits to reconnect; records each wait. */
    static final class FakeClock implements Reconnects.Clock {
        volatile long now;
        final List<Duration> sleeps = new CopyOnWriteArrayList<>();

        @Override
        public long nanoTime() {
            return now;
        }

        @Override
        public void sleep(Duration duration) {
            sleeps.add(duration);
            now += duration.toNanos();
        }
    }

    @TempDir
    Path home;
    private HttpServer server;
    private ExecutorService executor;
    private final Map<String, Route> routes = new ConcurrentHashMap<>();
    private final Map<String, AtomicInteger> calls = new ConcurrentHashMap<>();
    private final List<String> requests = new CopyOnWriteArrayList<>();
    /** Last-Event-ID of each events request, "-" when absent. */
    private final List<String> lastEventIds = new CopyOnWriteArrayList<>();
    private final Map<String, String> bodies = new ConcurrentHashMap<>();
    /** The Idempotency-Key of each request that had one, in order. */
    private final List<String> idempotencyKeys = new CopyOnWriteArrayList<>();
    /** Released after each test, for handlers that hang. */
    private final CountDownLatch release = new CountDownLatch(1);
    private final FakeClock clock = new FakeClock();
    private String out;
    private String err;

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        executor = Executors.newCachedThreadPool();
        server.setExecutor(executor); // a handler that hangs must not hold up the others
        server.createContext("/", this::handle);
        server.start();
    }

    @AfterEach
    void stop() {
        release.countDown();
        server.stop(0);
        executor.shutdownNow();
    }

    private void handle(HttpExchange exchange) throws IOException {
        String route = exchange.getRequestMethod() + " " + exchange.getRequestURI().getRawPath();
        String query = exchange.getRequestURI().getRawQuery();
        requests.add(route + (query == null ? "" : "?" + query));
        bodies.put(route, new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
        String idempotencyKey = exchange.getRequestHeaders().getFirst("Idempotency-Key");
        if (idempotencyKey != null) {
            idempotencyKeys.add(idempotencyKey);
        }
        if (route.endsWith("/events")) {
            String id = exchange.getRequestHeaders().getFirst("Last-Event-ID");
            lastEventIds.add(id == null ? "-" : id);
        }
        int call = calls.computeIfAbsent(route, r -> new AtomicInteger()).incrementAndGet();
        Route answer = routes.get(route);
        try {
            if (answer == null) {
                reply(exchange, 404, "application/json", "{\"error\":\"not_found\",\"message\":\"no route\",\"errors\":[]}");
            } else {
                answer.answer(exchange, call);
            }
        } catch (IOException | RuntimeException e) {
            throw e; // the server closes a connection whose answer was cut short by an exception
        } catch (Exception e) {
            throw new IOException(e);
        }
    }

    private static void reply(HttpExchange exchange, int status, String type, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        if (type != null) {
            exchange.getResponseHeaders().add("Content-Type", type);
        }
        exchange.sendResponseHeaders(status, bytes.length == 0 ? -1 : bytes.length);
        exchange.getResponseBody().write(bytes);
        exchange.close();
    }

    private static void json(HttpExchange exchange, int status, String body) throws IOException {
        reply(exchange, status, "application/json", body);
    }

    private static void stream(HttpExchange exchange, String events) throws IOException {
        reply(exchange, 200, "text/event-stream", events);
    }

    /** Sends the events, then drops the connection, the chunked body unfinished: a stream that broke. */
    private static void broken(HttpExchange exchange, String events) throws IOException {
        exchange.getResponseHeaders().add("Content-Type", "text/event-stream");
        exchange.sendResponseHeaders(200, 0);
        OutputStream body = exchange.getResponseBody();
        body.write(events.getBytes(StandardCharsets.UTF_8));
        body.flush();
        // a handler that throws before its answer is complete makes the server close the connection
        throw new IOException("the stream breaks here (on purpose)");
    }

    private int calls(String route) {
        AtomicInteger n = calls.get(route);
        return n == null ? 0 : n.get();
    }

    private int kage(Kage kage, String... args) {
        StringWriter o = new StringWriter();
        StringWriter e = new StringWriter();
        int status = Kage.run(kage, new PrintWriter(o), new PrintWriter(e), args);
        out = o.toString();
        err = e.toString();
        return status;
    }

    private int kage(String... args) {
        return kage(kage(), args);
    }

    private Kage kage() {
        Kage kage = new Kage(env(), home, ZoneOffset.UTC);
        kage.clock = clock;
        return kage;
    }

    private Map<String, String> env() {
        return Map.of("KAGE_URL", "http://127.0.0.1:" + server.getAddress().getPort(), "KAGE_API_KEY", KEY);
    }

    // 1. answers that are not the API's

    @Test
    void aPageThatIsNotTheApiIsAnErrorNeverAnEmptySuccess() {
        Route html = (exchange, n) -> reply(exchange, 200, "text/html", "<html><body>Sign in</body></html>");
        for (String route : List.of("POST /api/v1/tasks", "POST /api/v1/tasks/t-1/cancel", "POST /api/v1/keys",
                "GET /api/v1/tasks/t-1", "GET /api/v1/tasks/t-1/events")) {
            routes.put(route, html);
        }
        assertThat(kage("submit", "x", "-a", "demo")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(out).isEmpty();
        assertThat(err).startsWith("kage: the answer from http://127.0.0.1:").contains("is not the coordinator's API: HTTP 200")
                .contains("text/html");

        assertThat(kage("cancel", "t-1")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(out).isEmpty();
        assertThat(kage("keys", "create", "--tenant", "acme", "--scopes", "read")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(out).isEmpty();

        assertThat(kage("status", "t-1", "--wait")).as("not followed forever").isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).contains("where an event stream (text/event-stream) was expected");
        assertThat(calls("GET /api/v1/tasks/t-1/events")).as("a wrong URL stays wrong: not retried").isEqualTo(1);
    }

    @Test
    void aFourHundredPageThatIsNotTheApisJsonIsTheWrongUrlExitFour() {
        // Another web server, or a proxy's login page, at that URL: its 404 or 401 is no refusal of the API (exit 3).
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> reply(exchange, 404, "text/html", "<html>Not Found</html>"));
        assertThat(kage("status", "t-1")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).contains("is not the coordinator's API: 404: <html>Not Found</html>");
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 404,
                "{\"error\":\"not_found\",\"message\":\"no task t-1 for this API key\",\"errors\":[]}"));
        assertThat(kage("status", "t-1")).as("the API's own 404").isEqualTo(ExitCodes.API_REFUSED);
    }

    @Test
    void aSubmitWhoseAnswerWasLostIsSentAgainWithTheSameIdempotencyKeyAndGetsTheFirstTask() {
        routes.put("POST /api/v1/tasks", (exchange, n) -> {
            if (n == 1) {
                json(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Postgres is unavailable\",\"errors\":[]}");
            } else {
                exchange.getResponseHeaders().add("Idempotent-Replayed", "true");
                json(exchange, 202, "{\"task_id\":\"t-7\",\"status\":\"queued\"}");
            }
        });
        assertThat(kage("submit", "x", "-a", "demo")).isEqualTo(ExitCodes.OK);
        assertThat(out).isEqualTo("t-7\n");
        assertThat(err).contains("the first attempt's answer was lost; this is the task it created");
        assertThat(idempotencyKeys).hasSize(2).allMatch(k -> k.startsWith("kage-cli-"));
        assertThat(idempotencyKeys.get(1)).isEqualTo(idempotencyKeys.get(0));

        // Each command its own key; given up after three attempts, the message names the key to repeat it with.
        idempotencyKeys.clear();
        routes.put("POST /api/v1/tasks", (exchange, n) ->
                json(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Postgres is unavailable\",\"errors\":[]}"));
        assertThat(kage("submit", "x", "-a", "demo")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(idempotencyKeys).hasSize(SubmitCommand.SUBMIT_ATTEMPTS);
        assertThat(java.util.Set.copyOf(idempotencyKeys)).hasSize(1);
        assertThat(err).contains("--idempotency-key " + idempotencyKeys.getFirst());

        // A refusal is not sent again.
        idempotencyKeys.clear();
        routes.put("POST /api/v1/tasks", (exchange, n) -> json(exchange, 400,
                "{\"error\":\"validation_failed\",\"message\":\"the request is invalid: description\",\"errors\":[]}"));
        assertThat(kage("submit", "x", "-a", "demo")).isEqualTo(ExitCodes.API_REFUSED);
        assertThat(idempotencyKeys).hasSize(1);
    }

    @Test
    void aRedirectIsAnErrorNamingWhereItPoints() {
        Route redirect = (exchange, n) -> {
            exchange.getResponseHeaders().add("Location", "https://kage.example.com/api/v1/tasks");
            exchange.sendResponseHeaders(301, -1);
            exchange.close();
        };
        routes.put("POST /api/v1/tasks", redirect);
        routes.put("GET /api/v1/tasks/t-1/events", redirect);
        assertThat(kage("submit", "x", "-a", "demo")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(out).isEmpty();
        assertThat(err).contains("301: ").contains("redirects to https://kage.example.com/api/v1/tasks");
        assertThat(kage("status", "t-1", "--wait")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).contains("redirects to https://kage.example.com/api/v1/tasks");
    }

    @Test
    void aSubmitAnswerWithoutATaskIdFails() {
        routes.put("POST /api/v1/tasks", (exchange, n) -> json(exchange, 202, "{\"status\":\"queued\"}"));
        assertThat(kage("submit", "x", "-a", "demo")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(out).isEmpty();
        assertThat(err).contains("has no task_id");
    }

    // 2. a stream that goes silent, a stream whose headers never come

    @Test
    void aStreamSilentForTheIdleLimitIsClosedAndResumedAfterItsLastEvent() {
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            if ("1-0".equals(exchange.getRequestHeaders().getFirst("Last-Event-ID"))) {
                stream(exchange, FINISHED);
                return;
            }
            exchange.getResponseHeaders().add("Content-Type", "text/event-stream");
            exchange.sendResponseHeaders(200, 0);
            exchange.getResponseBody().write((": connected\n\n" + STARTED).getBytes(StandardCharsets.UTF_8));
            exchange.getResponseBody().flush();
            release.await(); // then nothing: a half-open connection
        });
        Kage kage = kage();
        kage.streamIdleLimit = Duration.ofMillis(300);
        assertThat(kage(kage, "status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(STARTED_LINE, FINISHED_LINE, FINAL_LINE);
        assertThat(lastEventIds).contains("1-0");
    }

    @Test
    void noHeadersWithinTheRequestTimeoutIsABrokenStreamAndIsRetried() {
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            if (n == 1) {
                release.await(); // accepted, never answered
            }
            stream(exchange, STARTED + FINISHED);
        });
        Kage kage = kage();
        kage.requestTimeout = Duration.ofSeconds(2);
        assertThat(kage(kage, "status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(STARTED_LINE, FINISHED_LINE, FINAL_LINE);
        assertThat(calls("GET /api/v1/tasks/t-1/events")).isEqualTo(2);
    }

    @Test
    void anErrorWhoseBodyNeverComesIsABrokenStreamAndIsRetried() {
        // A proxy sends a 502's headers and then stalls: the request's timeout ended with the headers, and the body was
        // read without any (--wait hung for ever).
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            if (n == 1) {
                exchange.getResponseHeaders().add("Content-Type", "text/html");
                exchange.sendResponseHeaders(502, 0);
                exchange.getResponseBody().write("<html>".getBytes(StandardCharsets.UTF_8));
                exchange.getResponseBody().flush();
                release.await(); // the rest never comes
            }
            stream(exchange, STARTED + FINISHED);
        });
        Kage kage = kage();
        kage.requestTimeout = Duration.ofSeconds(2);
        assertThat(kage(kage, "status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(STARTED_LINE, FINISHED_LINE, FINAL_LINE);
        assertThat(calls("GET /api/v1/tasks/t-1/events")).isEqualTo(2);
    }

    // 3. a stream that opened and broke is no failure in a row

    @Test
    void streamsThatOpenAndBreakManyTimesNeverUseUpTheFailureBudget() {
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            String last = exchange.getRequestHeaders().getFirst("Last-Event-ID");
            int seen = last == null ? 0 : Integer.parseInt(last.substring(0, last.indexOf('-')));
            if (seen >= 20) {
                stream(exchange, FINISHED.replace("id: 2-0", "id: 21-0"));
            } else {
                broken(exchange, "event: job.started\nid: " + (seen + 1) + "-0\ndata: {\"at\":\"2025-01-31T12:00:01Z\","
                        + "\"agent\":\"demo\",\"worker\":\"w1\",\"attempt\":\"" + (seen + 1) + "\"}\n\n");
            }
        });
        Kage kage = kage();
        kage.reconnectBudget = Duration.ofSeconds(5); // 20 breaks a second apart: 20 s of breaks, none of them in a row
        assertThat(kage(kage, "status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        List<String> lines = out.lines().toList();
        assertThat(lines).hasSize(22);
        assertThat(lines.get(19)).isEqualTo("12:00:01  demo: started on w1 (attempt 20)");
        assertThat(lines.subList(20, 22)).containsExactly(FINISHED_LINE, FINAL_LINE);
        assertThat(clock.sleeps).hasSize(20);
    }

    @Test
    void aStreamThatIsAcceptedAndBreaksBeforeAnyLineAgainAndAgainUsesUpTheBudget() {
        // A proxy or a failing coordinator that answers 200 and closes at once: no stream ever opened, so the failures are
        // in a row, and the client gives up after the budget instead of looping for ever.
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> broken(exchange, ""));
        Kage kage = kage();
        kage.reconnectBudget = Duration.ofSeconds(5);
        assertThat(kage(kage, "status", "t-1", "--wait")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(clock.sleeps).hasSizeBetween(5, 7);
    }

    // 4. Retry-After and a time budget; the finished line when the task cannot be read

    @Test
    void a503WithRetryAfterIsWaitedOutForAsLongAsTheBudget() {
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            if (n <= 30) { // 150 s of a Postgres outage
                exchange.getResponseHeaders().add("Retry-After", "5");
                json(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Postgres is unavailable\",\"errors\":[]}");
            } else {
                stream(exchange, STARTED + FINISHED);
            }
        });
        assertThat(kage("status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(STARTED_LINE, FINISHED_LINE, FINAL_LINE);
        assertThat(clock.sleeps).hasSize(30).containsOnly(Duration.ofSeconds(5));
    }

    @Test
    void a429TooManyStreamsIsWaitedOutLikeA503() {
        // The tenant has KAGE_MAX_EVENT_STREAMS_PER_TENANT streams open: --wait waits for one to close (it ended with
        // exit 3 while the task ran on).
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> json(exchange, 200, TASK));
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            if (n <= 3) {
                exchange.getResponseHeaders().add("Retry-After", "15");
                json(exchange, 429, "{\"error\":\"too_many_streams\",\"message\":\"too many event streams\",\"errors\":[]}");
            } else {
                stream(exchange, STARTED + FINISHED);
            }
        });
        assertThat(kage("status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(STARTED_LINE, FINISHED_LINE, FINAL_LINE);
        assertThat(clock.sleeps).containsExactly(Duration.ofSeconds(15), Duration.ofSeconds(15), Duration.ofSeconds(15));
    }

    @Test
    void anOutageLongerThanTheBudgetIsExitFour() {
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            exchange.getResponseHeaders().add("Retry-After", "5");
            json(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Postgres is unavailable\",\"errors\":[]}");
        });
        assertThat(kage("status", "t-1", "--wait")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).isEqualTo("kage: 503: Postgres is unavailable\n");
        assertThat(Duration.ofNanos(clock.now)).isEqualTo(Reconnects.BUDGET);
        assertThat(calls("GET /api/v1/tasks/t-1/events")).isEqualTo(61);
    }

    @Test
    void aFinishedEventWhoseTaskCannotBeReadIsStillPrinted() {
        List<String> events = List.of(STARTED, FINISHED);
        routes.put("GET /api/v1/tasks/t-1", (exchange, n) -> {
            if (n == 1) {
                exchange.getResponseHeaders().add("Retry-After", "5");
                json(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Postgres is unavailable\",\"errors\":[]}");
            } else {
                json(exchange, 200, TASK);
            }
        });
        routes.put("GET /api/v1/tasks/t-1/events", (exchange, n) -> {
            String last = exchange.getRequestHeaders().getFirst("Last-Event-ID");
            int from = last == null ? 0 : Integer.parseInt(last.substring(0, last.indexOf('-')));
            stream(exchange, String.join("", events.subList(from, events.size())));
        });
        assertThat(kage("status", "t-1", "--wait")).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(STARTED_LINE, "12:00:02  demo: finished failed (task failed)", FINAL_LINE);
    }

    // watch: every page of active tasks; an event whose task could not be read comes again

    private void watchRoutes() {
        routes.put("GET /api/v1/tasks", (exchange, n) -> {
            String query = exchange.getRequestURI().getQuery();
            if (query.contains("cursor=")) {
                json(exchange, 200, "{\"tasks\":[{\"task_id\":\"t-b\",\"status\":\"queued\",\"agents\":[\"demo\"],\"description\":\"b\"}],"
                        + "\"next_cursor\":null}");
            } else {
                json(exchange, 200, "{\"tasks\":[{\"task_id\":\"t-a\",\"status\":\"running\",\"agents\":[\"demo\"],\"description\":\"a\"}],"
                        + "\"next_cursor\":\"c 2\"}");
            }
        });
        routes.put("GET /api/v1/tasks/t-c", (exchange, n) -> {
            if (n == 1) {
                exchange.getResponseHeaders().add("Retry-After", "5");
                json(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Postgres is unavailable\",\"errors\":[]}");
            } else {
                json(exchange, 200, "{\"task_id\":\"t-c\",\"status\":\"queued\",\"agents\":[{\"cli_name\":\"demo\"}],\"description\":\"c\"}");
            }
        });
        routes.put("GET /api/v1/events", (exchange, n) -> {
            if ("1-0".equals(exchange.getRequestHeaders().getFirst("Last-Event-ID"))) {
                // ends the watch for the test: a key revoked
                json(exchange, 403, "{\"error\":\"forbidden\",\"message\":\"revoked\",\"errors\":[]}");
            } else {
                stream(exchange, ": connected\n\nevent: task.submitted\nid: 1-0\ndata: {\"task_id\":\"t-c\"}\n\n");
            }
        });
    }

    @Test
    void watchListsEveryPageOfTheActiveTasks() {
        watchRoutes();
        assertThat(kage("watch")).isEqualTo(ExitCodes.API_REFUSED);
        assertThat(out).contains("  t-a  running  demo  a\n").contains("  t-b  queued  demo  b\n");
    }

    @Test
    void watchShowsAnEventWhoseTaskCouldNotBeReadWhenItComesAgain() {
        watchRoutes();
        assertThat(kage("watch")).isEqualTo(ExitCodes.API_REFUSED);
        assertThat(out).contains("  t-c  queued  demo  c\n");
        assertThat(lastEventIds).containsExactly("-", "-", "1-0");
    }

    @Test
    void watchReadsTheTasksAgainWhenItsStreamSaysEventsMayBeMissing() {
        // t-a is listed running, then ends while no event of it reaches the watch (the capped stream trimmed it, or it
        // ended between the listing and the stream's start). The stream's first event says events may be missing.
        routes.put("GET /api/v1/tasks", (exchange, n) -> json(exchange, 200, n == 1
                ? "{\"tasks\":[{\"task_id\":\"t-a\",\"status\":\"running\",\"agents\":[\"demo\"],\"description\":\"a\"}],\"next_cursor\":null}"
                : "{\"tasks\":[],\"next_cursor\":null}"));
        routes.put("GET /api/v1/tasks/t-a", (exchange, n) -> json(exchange, 200,
                "{\"task_id\":\"t-a\",\"status\":\"completed\",\"agents\":[{\"cli_name\":\"demo\"}],\"description\":\"a\"}"));
        routes.put("GET /api/v1/events", (exchange, n) -> {
            if ("5-0".equals(exchange.getRequestHeaders().getFirst("Last-Event-ID"))) {
                json(exchange, 403, "{\"error\":\"forbidden\",\"message\":\"revoked\",\"errors\":[]}");
            } else {
                stream(exchange, "event: stream.connected\nid: 5-0\ndata: {\"type\":\"stream.connected\",\"complete\":\"false\"}\n\n");
            }
        });
        assertThat(kage("watch")).isEqualTo(ExitCodes.API_REFUSED);
        assertThat(out).contains("  t-a  running  demo  a\n").contains("  t-a  running -> completed\n");
        assertThat(lastEventIds).as("it resumes from the stream's start").containsExactly("-", "5-0");
    }

    // 5. keys and URLs that cannot be sent; anything unforeseen

    @Test
    void aKeyOrIdempotencyKeyThatNoHeaderCanCarryIsAConfigurationErrorThatShowsOnlyItsStart() {
        String curly = "\u201C" + KEY + "\u201D";
        assertThat(kage(kage(), "--key", curly, "queues")).isEqualTo(ExitCodes.USAGE);
        assertThat(err.lines().toList()).hasSize(1);
        assertThat(err).startsWith("kage: --key: the API key (\u201Ckb_…) has U+201C at character 1")
                .doesNotContain(KEY.substring(3, 12)).doesNotContain("Exception");

        assertThat(kage(new Kage(Map.of("KAGE_URL", env().get("KAGE_URL"), "KAGE_API_KEY", "kb_0123 456789"), home, ZoneOffset.UTC),
                "queues")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).contains("KAGE_API_KEY: the API key (kb_0123 456…) has U+0020 (a space) at character 8");

        assertThat(kage("submit", "x", "-a", "demo", "--idempotency-key", "deploy 2025-01-31")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).startsWith("kage: --idempotency-key (depl…) has U+0020");
        assertThat(requests).isEmpty();
    }

    @Test
    void aUrlWithAPortOutOfRangeIsAConfigurationError() {
        assertThat(kage("--url", "http://127.0.0.1:99999", "queues")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).isEqualTo("kage: --url: 'http://127.0.0.1:99999' has port 99999; a port is 1-65535\n");
    }

    @CommandLine.Command(name = "boom")
    static final class Boom implements Callable<Integer> {
        @Override
        public Integer call() {
            throw new IllegalArgumentException("invalid header value: \"" + KEY + "\"");
        }
    }

    @Test
    void anUnforeseenExceptionIsOneLineWithoutItsMessageAndExitFour() {
        StringWriter o = new StringWriter();
        StringWriter e = new StringWriter();
        CommandLine cli = Kage.commandLine(kage(), new PrintWriter(o), new PrintWriter(e));
        cli.addSubcommand("boom", new Boom());
        cli.setErr(new PrintWriter(e)); // and the handler, to the command added
        cli.setExecutionExceptionHandler(cli.getExecutionExceptionHandler());
        assertThat(cli.execute("boom")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(e.toString().lines().toList()).hasSize(1);
        assertThat(e.toString()).startsWith("kage: unexpected java.lang.IllegalArgumentException").doesNotContain(KEY.substring(0, 12));
    }

    // 6. the next page's hint keeps the filters

    @Test
    void theNextPageHintRepeatsTheFiltersQuotedForTheShell() {
        routes.put("GET /api/v1/tasks", (exchange, n) -> json(exchange, 200, "{\"tasks\":[],\"next_cursor\":\"MjAyNS0w+MS/x==\"}"));
        assertThat(kage("tasks", "--status", "failed,partial", "--agent", "my agent's", "--since", "2025-01-31T12:00:00Z",
                "--limit", "5")).isEqualTo(ExitCodes.OK);
        assertThat(err).isEqualTo("more: kage tasks --status failed,partial --agent 'my agent'\\''s' --since 2025-01-31T12:00:00Z"
                + " --limit 5 --cursor MjAyNS0w+MS/x==\n");
        // Given on the command line, the coordinator's URL and the config file go with it (a page of the default
        // coordinator refused the cursor), and --json too, whose output stays the page alone.
        String url = "http://127.0.0.1:" + server.getAddress().getPort();
        assertThat(kage("--url", url, "tasks", "--json")).isEqualTo(ExitCodes.OK);
        assertThat(out).isEqualTo("{\"tasks\":[],\"next_cursor\":\"MjAyNS0w+MS/x==\"}\n");
        assertThat(err).isEqualTo("more: kage --url " + url + " tasks --json --cursor MjAyNS0w+MS/x==\n");
    }

    // 7. a name that does not resolve

    @Test
    void aHostThatDoesNotResolveIsSaidSo() {
        assertThat(kage("--url", "http://kage-no-such-host.invalid:8003", "queues")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).isEqualTo("kage: cannot reach the coordinator at http://kage-no-such-host.invalid:8003: "
                + "cannot resolve host kage-no-such-host.invalid\n");
    }

    // 9. options: no clusters, and "--" before a description that starts with '-'

    @Test
    void aSingleDashTypoIsAnUnknownOptionNotAClusterOfOthers() {
        assertThat(kage("submit", "x", "-a", "demo", "-wait")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).contains("-wait");
        assertThat(requests).isEmpty();
    }

    @Test
    void aDescriptionStartingWithAnAtSignIsSentAsItIsNotReadFromAFile() throws Exception {
        // picocli reads "@name" as "the arguments in file name", after "--" too: "@notes.md" sent that file's text.
        java.nio.file.Path file = java.nio.file.Files.writeString(java.nio.file.Files.createTempFile("kage-at", ".txt"), "--bogus\n");
        try {
            routes.put("POST /api/v1/tasks", (exchange, n) -> json(exchange, 202, "{\"task_id\":\"t-9\",\"status\":\"queued\"}"));
            assertThat(kage("submit", "-a", "demo", "--", "@" + file)).isEqualTo(ExitCodes.OK);
            assertThat(ApiClient.JSON.readTree(bodies.get("POST /api/v1/tasks")).path("description").asText()).isEqualTo("@" + file);
            assertThat(kage("submit", "-a", "demo", "@" + file)).isEqualTo(ExitCodes.OK);
            assertThat(ApiClient.JSON.readTree(bodies.get("POST /api/v1/tasks")).path("description").asText()).isEqualTo("@" + file);
        } finally {
            java.nio.file.Files.delete(file);
        }
    }

    @Test
    void aKeyGivenToAMistypedOptionIsNotPrinted() {
        // picocli's message quotes what it could not match: "Unknown options: '--api-key', 'kb_…'" went to a CI log.
        String key = "kb_01234567secretsecretsecret";
        for (String[] args : List.of(new String[] {"--api-key", key, "status", "t-1"}, new String[] {"--api-key=" + key, "status", "t-1"},
                new String[] {"-key", key, "status", "t-1"}, new String[] {"status", "t-1", key},
                new String[] {"--token", "plain-secret-value", "status", "t-1", "--apikey", "other-secret-value"})) {
            assertThat(kage(args)).as(String.join(" ", args)).isEqualTo(ExitCodes.USAGE);
            assertThat(err).as(String.join(" ", args)).doesNotContain("secretsecret").doesNotContain("other-secret-value")
                    .isNotEmpty();
        }
        assertThat(kage("--api-key", key, "status", "t-1")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).contains("Unknown option").contains("kb_01234567…");
        assertThat(requests).isEmpty();
    }

    @Test
    void aDescriptionStartingWithADashGoesAfterDoubleDash() throws Exception {
        routes.put("POST /api/v1/tasks", (exchange, n) -> json(exchange, 202, "{\"task_id\":\"t-9\",\"status\":\"queued\"}"));
        assertThat(kage("submit", "-a", "demo", "--", "-rf: remove the --wait flag")).isEqualTo(ExitCodes.OK);
        assertThat(out).isEqualTo("t-9\n");
        JsonNode body = ApiClient.JSON.readTree(bodies.get("POST /api/v1/tasks"));
        assertThat(body.path("description").asText()).isEqualTo("-rf: remove the --wait flag");
        assertThat(body.path("cli_assignments").toString()).isEqualTo("[{\"cli_name\":\"demo\"}]");
    }

}
