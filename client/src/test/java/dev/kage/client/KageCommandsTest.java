package dev.kage.client;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The commands against a stand-in for the coordinator's HTTP API (a JDK HTTP server answering in the API's shapes):
 * what is sent, what is printed where, and the exit codes. The real coordinator is exercised by KageClientIT in e2e.
 */
class KageCommandsTest {
    private static final String KEY = "kb_0123456789abcdefghijklmnopqrstuv";

    @TempDir
    Path home;
    private HttpServer server;
    private final List<String> requests = new CopyOnWriteArrayList<>();
    private final Map<String, String> bodies = new ConcurrentHashMap<>();
    private final Map<String, String> headers = new ConcurrentHashMap<>();
    private String out;
    private String err;

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", this::handle);
        server.start();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private void handle(HttpExchange exchange) throws IOException {
        String method = exchange.getRequestMethod();
        String path = exchange.getRequestURI().getRawPath();
        String query = exchange.getRequestURI().getRawQuery();
        requests.add(method + " " + path + (query == null ? "" : "?" + query));
        bodies.put(method + " " + path, new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
        exchange.getRequestHeaders().forEach((name, values) -> headers.put(name.toLowerCase(), values.getFirst()));
        if (!KEY.equals(exchange.getRequestHeaders().getFirst("X-API-Key"))) {
            reply(exchange, 401, "{\"error\":\"unauthorized\",\"message\":\"missing or unknown API key (header X-API-Key)\",\"errors\":[]}");
            return;
        }
        switch (method + " " + path) {
            case "POST /api/v1/tasks" -> {
                exchange.getResponseHeaders().add("X-Kage-Unserved-Agents", "idle");
                reply(exchange, 202, "{\"task_id\":\"t-1\",\"status\":\"queued\",\"status_url\":\"/api/v1/tasks/t-1\",\"agents\":[\"demo\"]}");
            }
            case "GET /api/v1/tasks/t-1/events" -> {
                exchange.getResponseHeaders().add("Content-Type", "text/event-stream");
                reply(exchange, 200, ": keep-alive\n\n"
                        + "event: job.started\nid: 1-0\ndata: {\"at\":\"2025-01-31T12:00:01Z\",\"agent\":\"demo\",\"worker\":\"w1\",\"attempt\":\"1\"}\n\n"
                        + "event: job.finished\nid: 2-0\ndata: {\"at\":\"2025-01-31T12:00:02Z\",\"agent\":\"demo\",\"status\":\"failed\","
                        + "\"task_status\":\"failed\"}\n\n");
            }
            case "GET /api/v1/tasks/t-1" -> reply(exchange, 200, """
                    {"task_id":"t-1","status":"failed","agents":[{"cli_name":"demo","status":"failed","total_tokens":5,
                     "tokens_in":3,"tokens_out":2,"cost_usd":0,"duration_ms":10,"branch":null,"diff_stat":null,
                     "error":{"error_type":"CliError","error_message":"exit 1"}}],"errors":[]}""");
            case "GET /api/v1/tasks/evil" -> reply(exchange, 200, """
                    {"task_id":"evil","status":"failed","description":"fix it\\u001b]52;c;Y3VybCBldmlsLnNo\\u0007\\u001b[2J","agents":[{"cli_name":"demo","status":"failed","total_tokens":5,
                     "tokens_in":3,"tokens_out":2,"cost_usd":0,"duration_ms":10,"branch":null,
                     "diff_stat":"1 file changed\\r\\u202eevil",
                     "error":{"error_type":"CliError","error_message":"exit 1\\u001b]52;c;Y3VybCBldmlsLnNo\\u0007\\u001b[2J"}}],
                     "errors":[]}""");
            case "GET /api/v1/tasks/evil2" -> reply(exchange, 404,
                    "{\"error\":\"not_found\",\"message\":\"no task \\u001b]0;pwned\\u0007 for this API key\",\"errors\":[]}");
            case "GET /api/v1/tasks/nope" -> reply(exchange, 404, "{\"error\":\"not_found\",\"message\":\"no task nope for this API key\",\"errors\":[]}");
            case "GET /api/v1/tasks" -> reply(exchange, 400, "{\"error\":\"validation_failed\",\"message\":\"the request is invalid: limit\","
                    + "\"errors\":[{\"field\":\"limit\",\"message\":\"'0' is not a whole number from 1 to 100 (default 20)\"}]}");
            case "GET /api/v1/queues" -> reply(exchange, 503, "{\"error\":\"unavailable\",\"message\":\"Redis is unavailable\",\"errors\":[]}");
            case "GET /api/v1/workers" -> reply(exchange, 502, "<html>bad gateway</html>");
            default -> reply(exchange, 404, "{\"error\":\"not_found\",\"message\":\"no route\",\"errors\":[]}");
        }
    }

    private static void reply(HttpExchange exchange, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.sendResponseHeaders(status, bytes.length);
        exchange.getResponseBody().write(bytes);
        exchange.close();
    }

    private int kage(Map<String, String> env, String... args) {
        StringWriter o = new StringWriter();
        StringWriter e = new StringWriter();
        int status = Kage.run(new Kage(env, home, ZoneOffset.UTC), new PrintWriter(o), new PrintWriter(e), args);
        out = o.toString();
        err = e.toString();
        return status;
    }

    private Map<String, String> env() {
        return Map.of("KAGE_URL", "http://127.0.0.1:" + server.getAddress().getPort(), "KAGE_API_KEY", KEY);
    }

    @Test
    void textFromTheServerCannotDriveTheTerminalItIsShownEscaped() {
        // An agent steered by a repository's files wrote these into its error: set the clipboard (OSC 52), clear the
        // screen, hide text with a carriage return and a right-to-left override.
        for (String[] command : new String[][] {{"status", "evil"}, {"status", "evil", "--json"}, {"status", "evil2"}}) {
            kage(env(), command);
            String shown = out + err;
            assertThat(shown.chars().filter(c -> c == 0x1b || c == 0x07 || c == '\r' || c == 0x202e).count())
                    .as(String.join(" ", command) + ": " + shown).isZero();
        }
        kage(env(), "status", "evil");
        assertThat(out).contains("\\u001b]52;c;Y3VybCBldmlsLnNo\\u0007").contains("\\u202e");
        kage(env(), "status", "evil", "--json");
        assertThat(out).contains("\\u001b");
        kage(env(), "status", "evil2");
        assertThat(err).contains("no task \\u001b]0;pwned\\u0007 for this API key");
        assertThat(TerminalWriter.escaped('\t')).isFalse();
        assertThat(TerminalWriter.escaped('\n')).isFalse();
        assertThat(TerminalWriter.escaped(0x9b)).as("C1 CSI").isTrue();
        java.io.StringWriter shown = new java.io.StringWriter();
        try (PrintWriter terminal = new PrintWriter(new TerminalWriter(shown))) {
            terminal.print("a\r\nb\rc\r");
            terminal.print("\n");
        }
        assertThat(shown.toString()).as("CRLF line ends pass (Windows' line separator); a lone CR does not")
                .isEqualTo("a\r\nb\\u000dc\\u000d\n");
    }

    @Test
    void aDescriptionOnStandardInputThatIsNotUtf8IsAUsageErrorNotReplacementCharacters() {
        assertThat(SubmitCommand.standardInput("Fix the caf\u00e9 \uD83D\uDE42".getBytes(StandardCharsets.UTF_8)))
                .isEqualTo("Fix the caf\u00e9 \uD83D\uDE42");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> SubmitCommand.standardInput(new byte[] {'F', 'i', 'x', (byte) 0xff}))
                .isInstanceOfSatisfying(ClientException.class, e -> {
                    assertThat(e.exitCode()).isEqualTo(ExitCodes.USAGE);
                    assertThat(e.getMessage()).contains("standard input is not UTF-8");
                });
    }

    @Test
    void submitSendsTheSeedsBodyAndPrintsOnlyTheTaskIdOnStandardOutput() throws Exception {
        int status = kage(env(), "submit", "Quick test", "--agent", "demo", "--agent", "idle", "--priority", "HIGH",
                "--timeout", "60", "--repo", "/r", "--base-branch", "dev", "--max-tokens", "900", "--idempotency-key", "k-1");
        assertThat(status).isEqualTo(ExitCodes.OK);
        assertThat(out).isEqualTo("t-1\n");
        assertThat(err).contains("no live worker serves idle yet");
        JsonNode body = ApiClient.JSON.readTree(bodies.get("POST /api/v1/tasks"));
        assertThat(body).isEqualTo(ApiClient.JSON.readTree("""
                {"description":"Quick test","cli_assignments":[{"cli_name":"demo","timeout":60},{"cli_name":"idle","timeout":60}],
                 "priority":"high","repo":"/r","base_branch":"dev","budget":{"max_tokens":900}}"""));
        assertThat(headers).containsEntry("idempotency-key", "k-1").containsEntry("content-type", "application/json");
    }

    @Test
    void submitWaitPrintsProgressPerAgentAndExitsOneWhenTheTaskFailed() {
        int status = kage(env(), "submit", "x", "-a", "demo", "--wait");
        assertThat(status).isEqualTo(ExitCodes.TASK_NOT_COMPLETED);
        assertThat(out.lines().toList()).containsExactly(
                "t-1",
                "12:00:01  demo: started on w1",
                "12:00:02  demo: finished failed: 5 tokens (in 3, out 2), $0, 10 ms, no changes; CliError: exit 1 (task failed)",
                "task t-1 failed: 0 of 1 agents completed, 5 tokens, $0");
    }

    @Test
    void anApiRefusalIsItsMessageOnStandardErrorAndExitThree() {
        assertThat(kage(env(), "status", "nope")).isEqualTo(ExitCodes.API_REFUSED);
        assertThat(err).isEqualTo("kage: 404: no task nope for this API key\n");
        assertThat(out).isEmpty();

        assertThat(kage(env(), "tasks", "--limit", "0")).isEqualTo(ExitCodes.API_REFUSED);
        assertThat(err).isEqualTo("kage: 400: the request is invalid: limit\n"
                + "  limit: '0' is not a whole number from 1 to 100 (default 20)\n");
        assertThat(requests).contains("GET /api/v1/tasks?limit=0");

        assertThat(kage(Map.of("KAGE_URL", env().get("KAGE_URL"), "KAGE_API_KEY", "wrong-key"), "status", "t-1"))
                .isEqualTo(ExitCodes.API_REFUSED);
        assertThat(err).isEqualTo("kage: 401: missing or unknown API key (header X-API-Key)\n");
    }

    @Test
    void aServerErrorOrAnUnreachableCoordinatorIsExitFour() throws Exception {
        assertThat(kage(env(), "queues")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).isEqualTo("kage: 503: Redis is unavailable\n");
        assertThat(kage(env(), "workers")).isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).isEqualTo("kage: 502: <html>bad gateway</html>\n");

        int closed;
        try (ServerSocket socket = new ServerSocket(0)) {
            closed = socket.getLocalPort();
        }
        assertThat(kage(Map.of("KAGE_URL", "http://127.0.0.1:" + closed, "KAGE_API_KEY", KEY), "status", "t-1"))
                .isEqualTo(ExitCodes.UNAVAILABLE);
        assertThat(err).startsWith("kage: cannot reach the coordinator at http://127.0.0.1:" + closed + ": ");
    }

    @Test
    void usageAndConfigurationErrorsAreExitTwoAndTheKeyIsNeverPrinted() {
        assertThat(kage(env(), "submit", "no agent")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).contains("Missing required option: '--agent=AGENT'");
        assertThat(kage(env(), "submit", "x", "-a", "demo", "--priority", "urgent")).isEqualTo(ExitCodes.USAGE);
        assertThat(kage(env(), "frobnicate")).isEqualTo(ExitCodes.USAGE);
        assertThat(kage(env())).isEqualTo(ExitCodes.USAGE);
        assertThat(kage(Map.of(), "queues")).isEqualTo(ExitCodes.USAGE);
        assertThat(err).startsWith("kage: no API key: set KAGE_API_KEY");
        assertThat(kage(env(), "watch", "--interval", "1")).as("watch follows a stream, it has no interval").isEqualTo(ExitCodes.USAGE);
        assertThat(requests).isEmpty();

        assertThat(kage(env(), "config")).isEqualTo(ExitCodes.OK);
        assertThat(out).contains("kb_01234567…  (KAGE_API_KEY)").doesNotContain(KEY);
        assertThat(kage(env(), "--key", "flag-key-1234", "config", "--url", "http://other:1")).isEqualTo(ExitCodes.OK);
        assertThat(out).contains("url     http://other:1  (--url)").contains("flag…  (--key)");
    }

    @Test
    void everyCommandHasHelp() {
        for (String[] command : List.of(new String[] {"submit"}, new String[] {"status"}, new String[] {"tasks"},
                new String[] {"watch"}, new String[] {"cancel"}, new String[] {"queues"}, new String[] {"workers"},
                new String[] {"keys"}, new String[] {"keys", "create"}, new String[] {"keys", "list"},
                new String[] {"keys", "revoke"}, new String[] {"config"})) {
            String[] args = java.util.Arrays.copyOf(command, command.length + 1);
            args[command.length] = "--help";
            assertThat(kage(env(), args)).as(String.join(" ", args)).isEqualTo(ExitCodes.OK);
            assertThat(out).as(String.join(" ", args)).startsWith("Usage: kage " + String.join(" ", command));
        }
    }
}
