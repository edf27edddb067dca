package dev.kage.coordinator.task;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.agent.OutputFormat;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.task.Assignment;
import dev.kage.task.Priority;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class SubmitRequestParserTest {
    private final SubmitRequestParser parser = new SubmitRequestParser(new AgentCatalog(List.of(agent("claude-code"),
            agent("demo"))), KageSettings.load(Env.of(Map.of())));

    @Test
    void theSeedsBodyIsAcceptedWithDefaults() {
        SubmitRequest request = parse("""
                {"description": "Quick test", "cli_assignments": [{"cli_name": "claude-code", "timeout": 60}]}""");
        assertThat(request.description()).isEqualTo("Quick test");
        assertThat(request.assignments()).containsExactly(new Assignment("claude-code", 60));
        assertThat(request.priority()).isEqualTo(Priority.NORMAL);
        assertThat(request.repo()).isNull();
        assertThat(request.maxTokens()).isNull();
        assertThat(request.ignoredFields()).isEmpty();
    }

    @Test
    void metadataNumbersAreKeptAsSent() {
        SubmitRequest request = parse("""
                {"description": "d", "cli_assignments": [{"cli_name": "demo"}],
                 "metadata": {"amount": 0.12345678901234567890123, "huge": 1e300, "n": 7}}""");
        assertThat(request.metadataJson()).isEqualTo("{\"amount\":0.12345678901234567890123,\"huge\":1E+300,\"n\":7}");
        for (String number : List.of("1e200000", "-1e20000", "1e-20000", "[1, {\"x\": 2.5e309}]")) {
            assertThatThrownBy(() -> parse("{\"description\": \"d\", \"cli_assignments\": [{\"cli_name\": \"demo\"}], "
                    + "\"metadata\": {\"x\": " + number + "}}")).as(number).hasMessageContaining("metadata");
        }
        assertThat(parse("{\"description\": \"d\", \"cli_assignments\": [{\"cli_name\": \"demo\"}], "
                + "\"metadata\": {\"x\": 1e308, \"y\": 0e99999, \"z\": 1e-308}}").metadataJson()).contains("1E+308");
    }

    @Test
    void optionalFieldsAreReadAndUnknownOnesReported() {
        SubmitRequest request = parse("""
                {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "priority": "high",
                 "repo": "https://example.com/x.git", "base_branch": "release/1.2", "budget": {"max_tokens": 2000},
                 "metadata": {"ticket": "KB-1"}, "context": "x"}""");
        assertThat(request.assignments()).containsExactly(new Assignment("demo", 300));
        assertThat(request.priority()).isEqualTo(Priority.HIGH);
        assertThat(request.baseBranch()).isEqualTo("release/1.2");
        assertThat(request.maxTokens()).isEqualTo(2000);
        assertThat(request.metadataJson()).isEqualTo("{\"ticket\":\"KB-1\"}");
        assertThat(request.ignoredFields()).containsExactly("context");
    }

    @ParameterizedTest(name = "{0} → {1}")
    @CsvSource(delimiter = '|', textBlock = """
            not json                                                                        | body
            []                                                                              | body
            "text"                                                                          | body
            {"description": "a", "description": "b", "cli_assignments": [{"cli_name": "demo"}]} | body
            {"cli_assignments": [{"cli_name": "demo"}]}                                     | description
            {"description": "", "cli_assignments": [{"cli_name": "demo"}]}                  | description
            {"description": 5, "cli_assignments": [{"cli_name": "demo"}]}                   | description
            {"description": "a\\u0000b", "cli_assignments": [{"cli_name": "demo"}]}         | description
            {"description": "d"}                                                            | cli_assignments
            {"description": "d", "cli_assignments": []}                                     | cli_assignments
            {"description": "d", "cli_assignments": {"cli_name": "demo"}}                   | cli_assignments
            {"description": "d", "cli_assignments": ["demo"]}                               | cli_assignments[0]
            {"description": "d", "cli_assignments": [{"timeout": 5}]}                       | cli_assignments[0].cli_name
            {"description": "d", "cli_assignments": [{"cli_name": "rm -rf /"}]}             | cli_assignments[0].cli_name
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}, {"cli_name": "demo"}]} | cli_assignments[1].cli_name
            {"description": "d", "cli_assignments": [{"cli_name": "demo", "timeout": 0}]}   | cli_assignments[0].timeout
            {"description": "d", "cli_assignments": [{"cli_name": "demo", "timeout": -5}]}  | cli_assignments[0].timeout
            {"description": "d", "cli_assignments": [{"cli_name": "demo", "timeout": 1.5}]} | cli_assignments[0].timeout
            {"description": "d", "cli_assignments": [{"cli_name": "demo", "timeout": "60"}]} | cli_assignments[0].timeout
            {"description": "d", "cli_assignments": [{"cli_name": "demo", "timeout": 99999999999}]} | cli_assignments[0].timeout
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "priority": "urgent"} | priority
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "repo": "--upload-pack=x"} | repo
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "repo": "ext::sh -c id"} | repo
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "repo": "../../etc"} | repo
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "base_branch": "-x"} | base_branch
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "base_branch": "../main"} | base_branch
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "budget": {"max_tokens": 0}} | budget.max_tokens
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "budget": {"max_usd": 5}} | budget.max_usd
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "metadata": [1]} | metadata
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "metadata": {"k": "a\\u0000b"}} | metadata
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "metadata": {"k": [{"x": "\\u0000"}]}} | metadata
            {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "metadata": {"a\\u0000": 1}} | metadata
            """)
    void badInputNamesTheField(String body, String field) {
        assertThatThrownBy(() -> parse(body))
                .isInstanceOf(InvalidRequestException.class)
                .satisfies(e -> assertThat(((InvalidRequestException) e).errors()).extracting(FieldError::field).contains(field));
    }

    @Test
    void aDescriptionTooLongForOneCommandLineArgumentIsRefusedAtSubmit() throws Exception {
        // 40,000 CJK characters are 120,000 bytes in UTF-8: the most an agent's argument may carry, with room beside it.
        String most = "漢".repeat(SubmitRequestParser.MAX_DESCRIPTION_BYTES / 3);
        assertThat(parse(body(most)).description()).isEqualTo(most);
        String over = most + "漢";
        assertThatThrownBy(() -> parse(body(over))).isInstanceOf(InvalidRequestException.class)
                .satisfies(e -> assertThat(((InvalidRequestException) e).errors()).singleElement().satisfies(error -> {
                    assertThat(error.field()).isEqualTo("description");
                    assertThat(error.message()).contains("120003 bytes in UTF-8; at most 120000");
                }));
        assertThat(parse(body("😀".repeat(30_000))).description()).as("4 bytes each: 120,000").hasSize(60_000);
        assertThatThrownBy(() -> parse(body("😀".repeat(30_001)))).isInstanceOf(InvalidRequestException.class);
        // What Linux takes: the most, with 11 KB of template beside it, starts; the 100,000 characters accepted before
        // (300,000 bytes) could never start.
        assertThat(echo("--prompt=" + "x".repeat(11_000) + most)).isZero();
        assertThatThrownBy(() -> echo("漢".repeat(SubmitRequestParser.MAX_DESCRIPTION_CHARS)))
                .isInstanceOf(java.io.IOException.class).hasMessageContaining("Argument list too long");
    }

    private static String body(String description) {
        return "{\"description\": \"" + description + "\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}";
    }

    /** Runs {@code /bin/echo argument} and returns its exit code. */
    private static int echo(String argument) throws Exception {
        Process process = new ProcessBuilder("/bin/echo", argument).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        return process.waitFor();
    }

    @Test
    void unknownKeysOfAnAssignmentAreReportedWithTheirPath() {
        // "timout" is a typo: the job runs with the default timeout, and the caller is told the key had no effect.
        SubmitRequest request = parse("""
                {"description": "d", "context": "x", "cli_assignments": [{"cli_name": "demo", "timout": 60},
                                                         {"cli_name": "claude-code", "timeout": 90, "model": "m"}]}""");
        assertThat(request.assignments()).containsExactly(new Assignment("demo", 300), new Assignment("claude-code", 90));
        assertThat(request.ignoredFields()).containsExactly("context", "cli_assignments[0].timout", "cli_assignments[1].model");
    }

    @Test
    void metadataWithABackslashBeforeU0000IsNoNul() {
        // A Windows path: a backslash, then the letters "u0000" (serialized, it looks like an escaped NUL).
        SubmitRequest request = parse("""
                {"description": "d", "cli_assignments": [{"cli_name": "demo"}], "metadata": {"path": "C:\\\\u0000x"}}""");
        assertThat(request.metadataJson()).isEqualTo("{\"path\":\"C:\\\\u0000x\"}");
    }

    @Test
    void aBatchRefusesFieldsBesideItsTasks() {
        // A batch-wide "priority" would otherwise be dropped without a word.
        assertThatThrownBy(() -> parser.parseBatch("""
                {"priority": "high", "tasks": [{"description": "d", "cli_assignments": [{"cli_name": "demo"}]}]}"""
                .getBytes(StandardCharsets.UTF_8)))
                .isInstanceOf(InvalidRequestException.class)
                .satisfies(e -> assertThat(((InvalidRequestException) e).errors()).extracting(FieldError::field)
                        .containsExactly("priority"));
    }

    @Test
    void everyBadFieldIsReportedAtOnce() {
        assertThatThrownBy(() -> parse("""
                {"description": "", "cli_assignments": [{"cli_name": "nope", "timeout": 0}], "priority": 3}"""))
                .satisfies(e -> assertThat(((InvalidRequestException) e).errors()).extracting(FieldError::field)
                        .containsExactly("description", "cli_assignments[0].cli_name", "cli_assignments[0].timeout", "priority"));
    }

    @Test
    void deepNestingAndInvalidUtf8AreRefusedAsBodyErrors() {
        String deep = "{\"description\": \"d\", \"cli_assignments\": [{\"cli_name\": \"demo\"}], \"metadata\": "
                + "{\"a\":".repeat(100) + "1" + "}".repeat(100) + "}";
        assertThatThrownBy(() -> parse(deep)).satisfies(e -> assertThat(((InvalidRequestException) e).errors())
                .extracting(FieldError::field).containsExactly("body"));
        byte[] invalid = {'{', '"', 'd', '"', ':', '"', (byte) 0xC3, (byte) 0x28, '"', '}'};
        assertThatThrownBy(() -> parser.parse(invalid)).hasMessageContaining("not valid UTF-8");
        assertThatThrownBy(() -> parser.parse(new byte[0])).hasMessageContaining("body: is empty");
    }

    @Test
    void tooManyAssignmentsAreRefused() {
        StringBuilder body = new StringBuilder("{\"description\": \"d\", \"cli_assignments\": [");
        for (int i = 0; i < 17; i++) {
            body.append(i == 0 ? "" : ",").append("{\"cli_name\": \"demo\"}");
        }
        assertThatThrownBy(() -> parse(body + "]}")).hasMessageContaining("has 17 entries; at most 16");
    }

    @Test
    void callerValuesEchoedInErrorsAreMadePrintable() {
        assertThatThrownBy(() -> parse("{\"description\": \"d\", \"cli_assignments\": [{\"cli_name\": \"x\\r\\nSet-Cookie: a\"}]}"))
                .hasMessageContaining("unknown agent 'x\\u000d\\u000aSet-Cookie: a'");
    }

    private SubmitRequest parse(String body) {
        return parser.parse(body.getBytes(StandardCharsets.UTF_8));
    }

    private static AgentConfig agent(String name) {
        return new AgentConfig(name, AgentType.COMMAND, List.of("/bin/true", "{prompt}"), OutputFormat.TEXT, List.of(), "",
                "o200k_base", 1000, 0, 0, Path.of("/"), dev.kage.agent.RetryPolicy.DEFAULT);
    }
}
