package dev.kage.e2e.chaos;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kage.e2e.Fleet;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chaos scenario 5, hostile input: the {@link HostileCorpus} (several hundred bad requests, each named) against a
 * coordinator with three workers. No answer may be a 5xx; every 4xx must be JSON with an {@code error} and a
 * {@code message}, and a validation failure must name its fields in {@code errors[].field}; no task may be created
 * (rows of {@code tasks} in the fleet's schema before and after); nothing the caller sent may come back as a header.
 * Then valid tasks whose descriptions carry shell syntax run on a real worker with a fixture agent: each must reach
 * the agent byte for byte as one argument, and no marker file the syntax would create may appear.
 */
class HostileInputChaosIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "dev-key-12345";
    private static final String AGENT = "echo";
    private static final int WORKERS = 3;

    @TempDir
    Path dir;

    @Test
    void badRequestsAreRefusedIn4xxJsonAndCreateNothingAndNoDescriptionExecutes() throws Exception {
        Path origin = Chaos.createRepo(dir.resolve("origin"));
        Path runs = Files.createDirectories(dir.resolve("runs"));
        Path agents = Chaos.echoAgents(dir.resolve("agents.yml"), AGENT, "echo-two");
        Map<String, String> env = new HashMap<>();
        env.put("KAGE_AGENTS_FILE", agents.toString());
        env.put("E2E_LOG_DIR", runs.toString());
        env.put("MAX_REQUESTS_PER_MINUTE", "1000000");
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "chaos-hostile-input"))) {
            long began = System.nanoTime();
            Api api = new Api(fleet.port);
            fleet.startCoordinator(env);
            for (int w = 0; w < WORKERS; w++) {
                fleet.startWorker("hostile-w" + w, dir.resolve("work"), origin, env);
            }
            fleet.awaitHealthy();
            fleet.awaitWorkers(WORKERS);

            // The facts the corpus needs: keys of each kind, a task of this tenant and one of another tenant.
            String readOnly = createKey(api, "default", "read");
            String submitOnly = createKey(api, "default", "submit");
            String other = createKey(api, "other", "submit", "read");
            String revoked = createKey(api, "default", "submit", "read");
            String revokedId = keyId(api, revoked);
            assertThat(api.get("setup", "/api/v1/tasks", revoked).status()).isEqualTo(200);
            Api.Answer revoke = send(api, "DELETE", "/api/v1/keys/" + revokedId);
            assertThat(revoke.status()).as(revoke.body()).isEqualTo(200);
            String taskId = submit(api, KEY, "a task to aim at", origin);
            String otherTask = submit(api, other, "another tenant's task", origin);
            String forged = "kb_" + UUID.randomUUID().toString().replace("-", "") + "Zz";

            List<HostileCorpus.Case> corpus = HostileCorpus.build(new HostileCorpus.Context(KEY, readOnly, submitOnly, revoked,
                    forged, taskId, otherTask, origin.toString(), AGENT));
            long tasksBefore = fleet.count("SELECT count(*) FROM tasks");
            long keysBefore = fleet.count("SELECT count(*) FROM api_keys");

            List<String> failures = new ArrayList<>();
            Map<Integer, Integer> statuses = new java.util.TreeMap<>();
            int serverErrors = 0;
            for (HostileCorpus.Case c : corpus) {
                RawHttp.Reply reply = RawHttp.send(fleet.port, RawHttp.request(c.method(), c.target(), c.headers(), c.body(),
                        c.utf8Headers()));
                statuses.merge(reply.status(), 1, Integer::sum);
                serverErrors += reply.status() >= 500 ? 1 : 0;
                String problem = judge(c, reply);
                if (problem != null) {
                    failures.add(c.name() + ": " + problem);
                }
            }
            long tasksAfter = fleet.count("SELECT count(*) FROM tasks");
            long keysAfter = fleet.count("SELECT count(*) FROM api_keys");
            if (tasksAfter != tasksBefore) {
                failures.add("tasks created by the corpus: " + (tasksAfter - tasksBefore) + " "
                        + fleet.query("SELECT left(description, 80) FROM tasks ORDER BY created_at DESC LIMIT ?",
                        (int) (tasksAfter - tasksBefore)));
            }
            if (keysAfter != keysBefore) {
                failures.add("API keys created by the corpus: " + (keysAfter - keysBefore));
            }

            // Shell syntax in valid descriptions: run for real, must arrive verbatim and execute nothing.
            String token = "pwned-" + UUID.randomUUID().toString().substring(0, 8);
            Map<String, String> executed = new LinkedHashMap<>();
            for (Map.Entry<String, String> entry : shellDescriptions(token).entrySet()) {
                executed.put(submit(api, KEY, entry.getValue(), origin), entry.getKey());
            }
            ObjectNode withMetadata = JSON.createObjectNode().put("description", "metadata carries the syntax")
                    .put("repo", origin.toString());
            withMetadata.putArray("cli_assignments").addObject().put("cli_name", AGENT).put("timeout", 60);
            withMetadata.putObject("metadata").put("cmd", "$(touch /tmp/" + token + "-meta)").put("b", "`touch /tmp/" + token + "-meta2`");
            Api.Answer meta = api.post("setup", "/api/v1/tasks", KEY, withMetadata.toString());
            assertThat(meta.status()).as(meta.body()).isEqualTo(202);
            Map<String, String> descriptions = shellDescriptions(token);
            int verbatim = 0;
            for (Map.Entry<String, String> run : executed.entrySet()) {
                JsonNode task = awaitFinal(api, run.getKey());
                if (!task.path("status").asText().equals("completed")) {
                    failures.add("exec/" + run.getValue() + ": task ended " + task.path("status").asText() + " " + task.path("errors"));
                    continue;
                }
                Path prompt = runs.resolve("prompts").resolve(run.getKey() + "-" + AGENT + ".txt");
                String got = Files.exists(prompt) ? Files.readString(prompt) : null;
                // One that begins with '-' arrives with one space before it: never an option of the agent's command
                // (AgentConfig#render). Byte for byte otherwise.
                String sent = descriptions.get(run.getValue());
                if ((sent.startsWith("-") ? " " + sent : sent).equals(got)) {
                    verbatim++;
                } else {
                    failures.add("exec/" + run.getValue() + ": the agent got " + (got == null ? "nothing" : "'" + got + "'"));
                }
            }
            awaitFinal(api, JSON.readTree(meta.body()).get("task_id").asText());
            List<Path> markers = new ArrayList<>();
            for (Path root : List.of(Path.of("/tmp"), dir, Fleet.ROOT)) {
                try (Stream<Path> files = Files.walk(root, root.equals(dir) ? 12 : root.equals(Fleet.ROOT) ? 2 : 1)) {
                    files.filter(p -> p.getFileName() != null && p.getFileName().toString().contains(token)).forEach(markers::add);
                } catch (java.io.UncheckedIOException unreadable) {
                    // a folder of another process that vanished or is closed to us: not where a marker would be
                }
            }
            if (!markers.isEmpty()) {
                failures.add("marker files appeared: " + markers);
            }
            long took = Duration.ofNanos(System.nanoTime() - began).toSeconds();

            boolean pass = failures.isEmpty() && serverErrors == 0;
            Chaos.details("hostile-input", failures);
            Chaos.report("hostile-input", String.format(
                    "requests=%d workers=%d statuses=%s 5xx=%d failed_cases=%d tasks_created_by_bad_requests=%d "
                            + "shell_descriptions_run=%d arrived_verbatim=%d markers=%d took=%ds",
                    corpus.size(), WORKERS, statuses.toString().replace(" ", ""), serverErrors, failures.size(),
                    tasksAfter - tasksBefore, executed.size(), verbatim, markers.size(), took), pass);
            assertThat(corpus.size()).isGreaterThanOrEqualTo(200);
            assertThat(failures).as("cases that failed (also in target/chaos/hostile-input-details.txt)").isEmpty();
            assertThat(serverErrors).isZero();
        }
    }

    /** Why a case's answer is wrong, or null when it is right. */
    static String judge(HostileCorpus.Case c, RawHttp.Reply reply) {
        int status = reply.status();
        if (status < 0) {
            return "no answer (" + reply.problem() + ")";
        }
        if (status >= 500) {
            return "answered " + status + " " + abbreviate(reply.body());
        }
        if (reply.header("X-Injected") != null) {
            return "the caller's text came back as a header X-Injected";
        }
        if (c.expect() == HostileCorpus.Expect.REFUSED && (status < 400 || status > 499)) {
            return "answered " + status + " instead of a refusal " + abbreviate(reply.body());
        }
        if (c.status() != 0 && status != c.status()) {
            return "answered " + status + " instead of " + c.status() + " " + abbreviate(reply.body());
        }
        if (status >= 400) {
            JsonNode body;
            try {
                body = JSON.readTree(reply.body());
            } catch (Exception e) {
                return status + " whose body is not JSON: " + abbreviate(reply.body());
            }
            if (body == null || !body.isObject() || !body.path("message").isTextual() || body.path("message").asText().isBlank()
                    || !body.path("error").isTextual()) {
                return status + " without error and message: " + abbreviate(reply.body());
            }
            if (body.path("error").asText().equals("validation_failed")) {
                JsonNode errors = body.path("errors");
                if (!errors.isArray() || errors.isEmpty()) {
                    return "validation_failed without errors[]: " + abbreviate(reply.body());
                }
                for (JsonNode error : errors) {
                    if (!error.path("field").isTextual() || error.path("field").asText().isBlank()) {
                        return "an error without a field: " + abbreviate(reply.body());
                    }
                }
            }
            if (c.field() != null) {
                boolean named = false;
                for (JsonNode error : body.path("errors")) {
                    named |= error.path("field").asText().startsWith(c.field());
                }
                if (!named) {
                    return "does not name the field " + c.field() + ": " + abbreviate(reply.body());
                }
            }
        }
        return null;
    }

    /** Valid descriptions full of shell syntax, by name; {@code token} names the marker files they would create. */
    static Map<String, String> shellDescriptions(String token) {
        String m = "/tmp/" + token;
        Map<String, String> d = new LinkedHashMap<>();
        d.put("command-substitution", "$(touch " + m + "-1)");
        d.put("backticks", "`touch " + m + "-2`");
        d.put("semicolon", "fix it; touch " + m + "-3");
        d.put("and", "fix it && touch " + m + "-4");
        d.put("pipe", "fix it | touch " + m + "-5");
        d.put("newline", "fix it\ntouch " + m + "-6");
        d.put("single-quote-break", "'; touch " + m + "-7; echo '");
        d.put("double-quote-break", "\"; touch " + m + "-8; echo \"");
        d.put("ifs", "${IFS}touch${IFS}" + m + "-9");
        d.put("redirect", "fix it > " + m + "-10");
        d.put("option-like", "--help; touch " + m + "-11");
        d.put("dash-c", "-c touch " + m + "-12");
        d.put("placeholders", "{prompt} {task_id} {agent} {workdir} {model} touch " + m + "-13");
        d.put("format-string", "%s%n%x%p touch " + m + "-14");
        d.put("rm", "x; rm -rf ~/" + token + "; touch " + m + "-15");
        d.put("rtl-override", "\u202etouch " + m + "-16 \u202c");
        d.put("emoji", "\uD83D\uDE42 $(touch " + m + "-17) \uD83D\uDC69\u200D\uD83D\uDC69\u200D\uD83D\uDC67");
        d.put("process-substitution", "$((1+1)) <(touch " + m + "-18)");
        d.put("history", "!!; !-1; touch " + m + "-19");
        d.put("glob-and-tilde", "~/* /etc/* ; touch " + m + "-20");
        d.put("env-expansion", "$HOME $PATH ${E2E_LOG_DIR}/../" + token + "-21");
        d.put("combining", "e\u0301\u0301\u0301 z\u0335\u0336 $(touch " + m + "-22)");
        return d;
    }

    private static String createKey(Api api, String tenant, String... scopes) throws Exception {
        ObjectNode body = JSON.createObjectNode().put("tenant", tenant).put("name", "chaos");
        for (String scope : scopes) {
            body.withArray("scopes").add(scope);
        }
        Api.Answer created = api.post("setup", "/api/v1/keys", KEY, body.toString());
        assertThat(created.status()).as(created.body()).isEqualTo(201);
        return JSON.readTree(created.body()).get("key").asText();
    }

    private static String keyId(Api api, String key) throws Exception {
        for (JsonNode entry : JSON.readTree(api.get("setup", "/api/v1/keys", KEY).body()).get("keys")) {
            if (key.startsWith(entry.get("prefix").asText())) {
                return entry.get("id").asText();
            }
        }
        throw new AssertionError("no key listed with the prefix of " + key.substring(0, 11));
    }

    private static Api.Answer send(Api api, String method, String path) {
        RawHttp.Reply reply = RawHttp.send(apiPort(api), RawHttp.request(method, path, List.<String[]>of(new String[] {"X-API-Key", KEY}),
                new byte[0], false));
        return new Api.Answer(reply.status(), reply.body(), null);
    }

    private static int apiPort(Api api) {
        return api.port();
    }

    private static String submit(Api api, String key, String description, Path origin) throws Exception {
        ObjectNode body = JSON.createObjectNode().put("description", description).put("repo", origin.toString());
        body.putArray("cli_assignments").addObject().put("cli_name", AGENT).put("timeout", 60);
        Api.Answer answer = api.post("setup", "/api/v1/tasks", key, body.toString());
        assertThat(answer.status()).as(answer.body()).isEqualTo(202);
        return JSON.readTree(answer.body()).get("task_id").asText();
    }

    private static JsonNode awaitFinal(Api api, String id) {
        return await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500))
                .until(() -> JSON.readTree(api.get("setup", "/api/v1/tasks/" + id, KEY).body()),
                        t -> List.of("completed", "partial", "failed", "cancelled").contains(t.path("status").asText()));
    }

    private static String abbreviate(String body) {
        String flat = body.replace("\n", "\\n").replace("\r", "\\r");
        return flat.length() > 300 ? flat.substring(0, 300) + "…" : flat;
    }
}
