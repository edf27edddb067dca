package dev.kage.client;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;
import org.junit.jupiter.api.Test;

class FormatTest {
    static final String TASK = """
            {"task_id":"7d3c0d1e-0000-4000-8000-000000000001","status":"partial","description":"Add a\\nREADME","priority":"high",
             "repo":null,"base_branch":"main","created_at":"2025-01-31T12:00:00Z","updated_at":"2025-01-31T12:00:09Z",
             "completed_at":"2025-01-31T12:00:09Z",
             "budget":{"token_limit":50000,"tokens_used":1234,"tokens_reserved":0,"tokens_remaining":48766,"usd_used":0.0123,
                       "usd_reserved":0,"mode":"log"},
             "agents":[
               {"cli_name":"claude-code","status":"completed","timeout":60,"tokens_in":1000,"tokens_out":234,"cache_read_tokens":0,
                "cache_write_tokens":0,"total_tokens":1234,"cost_usd":0.0123,"usage_source":"agent","duration_ms":3210,
                "exit_code":0,"branch":"kage/7d3c/claude-code","commit":"abc","diff_stat":" 1 file changed, 2 insertions(+)\\n",
                "patch":"...","output_summary":"done","worker":"w1","waiting":null,"error":null},
               {"cli_name":"gemini-cli","status":"failed","timeout":60,"tokens_in":0,"tokens_out":0,"cache_read_tokens":0,
                "cache_write_tokens":0,"total_tokens":0,"cost_usd":0,"usage_source":null,"duration_ms":0,"exit_code":1,
                "branch":null,"commit":null,"diff_stat":null,"patch":null,"output_summary":null,"worker":"w2","waiting":null,
                "error":{"cli_name":"gemini-cli","error_type":"CliError","error_message":"exit 1","error_details":{},
                         "occurred_at":"2025-01-31T12:00:05Z"}}],
             "errors":[{"cli_name":"gemini-cli","error_type":"CliError","error_message":"exit 1","error_details":{},
                        "occurred_at":"2025-01-31T12:00:05Z"}]}
            """;

    static JsonNode json(String text) throws Exception {
        return ApiClient.JSON.readTree(text);
    }

    @Test
    void aTaskShowsItsSummaryAndOneRowPerAgentWithTokensCostBranchAndDiff() throws Exception {
        String shown = Format.task(json(TASK));
        assertThat(shown).contains("task         7d3c0d1e-0000-4000-8000-000000000001")
                .contains("status       partial")
                .contains("description  Add a README")
                .contains("repo         (the worker's default)")
                .contains("budget       1234 of 50000 tokens used, 0 reserved, $0.0123 (log mode)")
                .contains("errors:\n  gemini-cli  CliError: exit 1\n");
        List<String> lines = shown.lines().toList();
        String header = lines.stream().filter(l -> l.startsWith("AGENT")).findFirst().orElseThrow();
        String claude = lines.stream().filter(l -> l.startsWith("claude-code ")).findFirst().orElseThrow();
        assertThat(header).startsWith("AGENT        STATUS     TOKENS  COST     TIME   WORKER  BRANCH");
        assertThat(claude).isEqualTo("claude-code  completed  1234    $0.0123  3.2 s  w1      kage/7d3c/claude-code  "
                + "1 file changed, 2 insertions(+)");
        assertThat(lines).anyMatch(l -> l.startsWith("gemini-cli   failed     0       $0") && l.endsWith("w2      -                      -"));
    }

    @Test
    void aQueuedAgentShowsDashesAndWhyItWaits() throws Exception {
        JsonNode task = json("""
                {"task_id":"t","status":"queued","agents":[{"cli_name":"idle","status":"queued","total_tokens":0,"cost_usd":0,
                 "duration_ms":0,"worker":null,"branch":null,"diff_stat":null,"waiting":"no live worker serves idle"}],"errors":[]}""");
        assertThat(Format.task(task)).contains("idle   queued  -       -     -     -       -       -")
                .contains("waiting: idle: no live worker serves idle").doesNotContain("errors:");
    }

    @Test
    void theFinalLineSaysHowManyAgentsCompletedAndWhatTheyUsed() throws Exception {
        assertThat(Format.finalLine(json(TASK)))
                .isEqualTo("task 7d3c0d1e-0000-4000-8000-000000000001 partial: 1 of 2 agents completed, 1234 tokens, $0.0123");
        assertThat(Format.finalLine(json("{\"task_id\":\"t\",\"status\":\"cancelled\",\"agents\":[{\"status\":\"cancelled\","
                + "\"total_tokens\":0,\"cost_usd\":0.0},{\"status\":\"completed\",\"total_tokens\":5,\"cost_usd\":0.10}]}")))
                .isEqualTo("task t cancelled: 1 of 2 agents completed, 5 tokens, $0.1");
    }

    @Test
    void progressLinesSayWhatHappenedToWhichAgent() throws Exception {
        assertThat(progress("job.started", "{\"at\":\"2025-01-31T12:00:01Z\",\"agent\":\"claude-code\",\"worker\":\"w1\",\"attempt\":\"1\"}", null))
                .isEqualTo("12:00:01  claude-code: started on w1");
        assertThat(progress("job.started", "{\"at\":\"2025-01-31T12:00:01Z\",\"agent\":\"a\",\"worker\":\"w1\",\"attempt\":\"2\"}", null))
                .isEqualTo("12:00:01  a: started on w1 (attempt 2)");
        assertThat(progress("agent.rate_limited",
                "{\"at\":\"2025-01-31T12:00:02Z\",\"agent\":\"a\",\"limit_group\":\"anthropic\",\"pause_ms\":\"2000\",\"final\":\"false\"}", null))
                .isEqualTo("12:00:02  a: the provider answered 429: limit group anthropic paused for 2000 ms");
        assertThat(progress("job.rate_limited",
                "{\"at\":\"2025-01-31T12:00:02Z\",\"agent\":\"a\",\"reason\":\"rate_limited\",\"due\":\"2025-01-31T12:00:04Z\"}", null))
                .isEqualTo("12:00:02  a: rate-limited (rate_limited); waits until 12:00:04, not a failed attempt");
        assertThat(progress("job.finished", "{\"at\":\"2025-01-31T12:00:04Z\",\"agent\":\"claude-code\",\"status\":\"completed\","
                + "\"task_status\":\"running\"}", json(TASK)))
                .isEqualTo("12:00:04  claude-code: finished completed: 1234 tokens (in 1000, out 234, from agent), $0.0123, 3.2 s, "
                        + "branch kage/7d3c/claude-code, 1 file changed, 2 insertions(+)");
        assertThat(progress("job.finished", "{\"at\":\"2025-01-31T12:00:05Z\",\"agent\":\"gemini-cli\",\"status\":\"failed\","
                + "\"task_status\":\"partial\"}", json(TASK)))
                .isEqualTo("12:00:05  gemini-cli: finished failed: 0 tokens (in 0, out 0), $0, 0 ms, no changes; CliError: exit 1 "
                        + "(task partial)");
        assertThat(progress("task.cancelled", "{\"at\":\"2025-01-31T12:00:06Z\",\"task_status\":\"cancelled\"}", null))
                .isEqualTo("12:00:06  task: cancelled");
        assertThat(progress("job.discarded", "{\"at\":\"2025-01-31T12:00:06Z\",\"agent\":\"a\",\"dead_letter_id\":\"17-0\"}", null))
                .isEqualTo("12:00:06  a: dead letter 17-0 discarded; the job stays failed");
        assertThat(progress("job.recorded", "{\"at\":\"2025-01-31T12:00:06Z\",\"agent\":\"a\",\"status\":\"completed\","
                + "\"task_status\":\"completed\"}", null))
                .isEqualTo("12:00:06  a: outcome completed written (it waited for Postgres); task completed");
        assertThat(progress("task.ended", "{\"task_status\":\"failed\"}", null)).endsWith("task: task failed");
        assertThat(progress("job.requeued", "{\"at\":\"2025-01-31T12:00:06Z\",\"agent\":\"a\",\"attempt\":\"3\"}", null))
                .startsWith("12:00:06  a: enqueued again by the reconciler").doesNotContain("?");
        assertThat(progress("something.new", "{\"at\":\"2025-01-31T12:00:07Z\",\"agent\":\"a\",\"x\":\"1\"}", null))
                .isEqualTo("12:00:07  a: something.new x=1");
    }

    private static String progress(String name, String data, JsonNode task) {
        return Format.progress(new SseEvent(name, "1-0", data), task, ZoneOffset.UTC);
    }

    @Test
    void queuesWorkersAndKeysAreTables() throws Exception {
        String queues = Format.queues(json("""
                {"agents":[{"agent":"demo","delayed":2,"priorities":[
                  {"priority":"high","stream":"s","length":3,"waiting":1,"pending":2,"consumers":1,"oldest_age_ms":1500},
                  {"priority":"normal","stream":"s","length":0,"waiting":0,"pending":0,"consumers":0,"oldest_age_ms":0}]}],"dead":4}"""));
        assertThat(queues).isEqualTo("""
                AGENT  PRIORITY  WAITING  PENDING  LENGTH  CONSUMERS  OLDEST  DELAYED
                demo   high      1        2        3       1          1.5 s   2
                demo   normal    0        0        0       0          -       2
                dead letters: 4
                """);
        String workers = Format.workers(json("""
                {"workers":[{"id":"w1","agents":["demo","idle"],"slots":5,"busy":1,"in_flight":["job-1"],
                  "heartbeat_at":"2025-01-31T12:00:00Z","pid":42}]}"""));
        assertThat(workers).contains("WORKER  AGENTS     SLOTS  BUSY  IN FLIGHT  HEARTBEAT             PID")
                .contains("w1      demo,idle  5      1     job-1      2025-01-31T12:00:00Z  42");
        assertThat(Format.workers(json("{\"workers\":[]}"))).isEqualTo("no live workers\n");
        String keys = Format.keys(json("""
                {"keys":[{"id":7,"tenant":"acme","name":"ci","prefix":"kb_abcdefgh","scopes":["submit","read"],
                  "created_at":"2025-01-31T12:00:00Z","revoked_at":null,"last_used_at":null}]}"""));
        assertThat(keys).contains("7   acme    kb_abcdefgh…  submit,read  ci    2025-01-31T12:00:00Z  -        -");
    }

    @Test
    void durationsAreCompact() {
        assertThat(Format.duration(0)).isEqualTo("0 ms");
        assertThat(Format.duration(999)).isEqualTo("999 ms");
        assertThat(Format.duration(3210)).isEqualTo("3.2 s");
        assertThat(Format.duration(245_000)).isEqualTo("4m05s");
        assertThat(Format.duration(7_380_000)).isEqualTo("2h03m");
    }

    @Test
    void watchShowsActiveTasksFirstThenNewTasksAndStatusChanges() throws Exception {
        TaskWatch watch = new TaskWatch(ZoneOffset.UTC);
        Instant t0 = Instant.parse("2025-01-31T12:00:00Z");
        JsonNode running = json("{\"task_id\":\"a\",\"status\":\"running\",\"agents\":[\"demo\"],\"description\":\"one\"}");
        JsonNode doneBefore = json("{\"task_id\":\"b\",\"status\":\"completed\",\"agents\":[\"demo\"],\"description\":\"two\"}");
        assertThat(watch.update(List.of(running, doneBefore), t0)).containsExactly("12:00:00  a  running  demo  one");
        assertThat(watch.update(List.of(running, doneBefore), t0.plusSeconds(1))).isEmpty();

        JsonNode finished = json("{\"task_id\":\"a\",\"status\":\"completed\",\"agents\":[{\"cli_name\":\"demo\"}]}");
        JsonNode fresh = json("{\"task_id\":\"c\",\"status\":\"completed\",\"agents\":[\"x\",\"y\"],\"description\":\"fast\"}");
        assertThat(watch.update(List.of(finished, fresh), t0.plusSeconds(2)))
                .containsExactly("12:00:02  a  running -> completed", "12:00:02  c  completed  x,y  fast");
    }

    @Test
    void shorteningNeverSplitsACharacterOutsideTheBasicPlane() {
        // three emoji are six UTF-16 units: a cut by units would keep half of the first
        assertThat(Format.shorten("\uD83D\uDE00\uD83D\uDE00\uD83D\uDE00", 2)).isEqualTo("\uD83D\uDE00…");
        assertThat(Format.shorten("\uD83D\uDE00\uD83D\uDE00", 2)).as("two code points fit in two").isEqualTo("\uD83D\uDE00\uD83D\uDE00");
        assertThat(Format.shorten("ab\uD83D\uDE00cd", 4)).isEqualTo("ab\uD83D\uDE00…");
    }

    @Test
    void tableColumnsAreAlignedAsATerminalShowsThem() {
        String table = new Table("NAME", "STATUS").row("日本語", "ok").row("\uD83D\uDE00x", "ok").row("ascii", "ok").render();
        assertThat(table).isEqualTo("""
                NAME    STATUS
                日本語  ok
                \uD83D\uDE00x     ok
                ascii   ok
                """);
    }
}
