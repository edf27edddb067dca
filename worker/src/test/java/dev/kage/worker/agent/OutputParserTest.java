package dev.kage.worker.agent;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.agent.OutputFormat;
import dev.kage.tokens.TokenCounter;
import dev.kage.tokens.Usage;
import dev.kage.tokens.Usage.UsageSource;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class OutputParserTest {
    private static final String CLAUDE_RESULT = """
            {"type":"result","subtype":"success","is_error":false,"result":"Done: wrote NEW.md","session_id":"s-1",\
            "num_turns":2,"duration_ms":2100,"total_cost_usd":0.012345,"usage":{"input_tokens":1200,"output_tokens":340,\
            "cache_read_input_tokens":5000,"cache_creation_input_tokens":700}}""";

    @Test
    void claudeJsonUsageAndCostComeFromTheAgentsReport() {
        AgentReport report = OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "prompt", CLAUDE_RESULT, CLAUDE_RESULT);
        assertThat(report.result()).isEqualTo("Done: wrote NEW.md");
        assertThat(report.isError()).isFalse();
        assertThat(report.sessionId()).isEqualTo("s-1");
        assertThat(report.usage().inputTokens()).isEqualTo(1200);
        assertThat(report.usage().outputTokens()).isEqualTo(340);
        assertThat(report.usage().cacheReadTokens()).isEqualTo(5000);
        assertThat(report.usage().cacheWriteTokens()).isEqualTo(700);
        assertThat(report.usage().totalTokens()).isEqualTo(7240);
        assertThat(report.usage().costUsd()).isEqualByComparingTo("0.012345");
        assertThat(report.usage().source()).isEqualTo(UsageSource.AGENT);
    }

    @Test
    void aReportsNegativeOrHugeFiguresCanNeitherGiveABudgetBackNorWrapItAround() {
        String hostile = """
                {"type":"result","is_error":false,"result":"ok","total_cost_usd":-3,"usage":{"input_tokens":-1000000,\
                "output_tokens":1e30,"cache_read_input_tokens":9223372036854775807,"cache_creation_input_tokens":5}}""";
        AgentReport report = OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "prompt", hostile, hostile);
        assertThat(report.usage().inputTokens()).isZero();
        assertThat(report.usage().outputTokens()).isEqualTo(Usage.MAX_TOKENS);
        assertThat(report.usage().cacheReadTokens()).isEqualTo(Usage.MAX_TOKENS);
        assertThat(report.usage().totalTokens()).isEqualTo(2 * Usage.MAX_TOKENS + 5).isPositive();
        assertThat(report.usage().costUsd()).isEqualByComparingTo("0");

        String dear = CLAUDE_RESULT.replace("0.012345", "1e30");
        Usage usage = OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "prompt", dear, dear).usage();
        assertThat(usage.costUsd()).isEqualByComparingTo(Usage.MAX_COST_USD);
        assertThat(dev.kage.budget.PeriodLimits.micros(usage.costUsd())).as("chargeable in micro-USD").isPositive();
    }

    @Test
    void streamJsonIsReadFromItsFinalResultLine() {
        String stream = """
                {"type":"system","subtype":"init","session_id":"s-1"}
                {"type":"assistant","message":{"content":[{"type":"text","text":"working"}]}}
                """ + CLAUDE_RESULT + "\n";
        AgentReport report = OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "prompt", stream, stream);
        assertThat(report.usage().outputTokens()).isEqualTo(340);
    }

    @Test
    void aRateLimitedClaudeRunIsAnError() {
        String limited = """
                {"type":"result","subtype":"success","is_error":true,"api_error_status":429,\
                "result":"API Error: Request rejected (429) · rate limited","usage":{"input_tokens":0,"output_tokens":0}}""";
        AgentReport report = OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "p", limited, limited);
        assertThat(report.isError()).isTrue();
        assertThat(report.result()).contains("429");
    }

    @Test
    void outputWithoutAReportIsCountedWithTheTokenizerAndPricedFromConfig() {
        String output = "I changed three files and ran the tests.";
        AgentReport report = OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "Fix the bug", output, output);
        assertThat(report.usage().source()).isEqualTo(UsageSource.TOKENIZER);
        assertThat(report.usage().inputTokens()).isEqualTo(TokenCounter.count("o200k_base", "Fix the bug"));
        assertThat(report.usage().outputTokens()).isEqualTo(TokenCounter.count("o200k_base", output));
        long in = report.usage().inputTokens();
        long out = report.usage().outputTokens();
        assertThat(report.usage().costUsd().doubleValue()).isEqualTo((in * 3.0 + out * 15.0) / 1_000_000, org.assertj.core.data.Offset.offset(1e-6));

        // What it printed on standard error is its output too, as the seed counted it (not when it reports its usage).
        String chatter = "Reading src/main.py... running pytest -q ... 3 passed";
        AgentReport both = OutputParser.parse(agent(OutputFormat.TEXT), "Fix the bug", output, output, chatter);
        assertThat(both.usage().outputTokens()).isEqualTo(TokenCounter.count("o200k_base", output)
                + TokenCounter.count("o200k_base", chatter));
        assertThat(both.result()).as("the result is standard output's").isEqualTo(output);
        String json = "{\"type\":\"result\",\"result\":\"ok\",\"usage\":{\"input_tokens\":4,\"output_tokens\":2}}";
        assertThat(OutputParser.parse(agent(OutputFormat.CLAUDE_JSON), "p", json, json, chatter).usage().outputTokens())
                .as("a reported usage stands").isEqualTo(2);
    }

    @Test
    void openAiUsageIsRead() {
        String body = """
                {"id":"chatcmpl-1","choices":[{"message":{"role":"assistant","content":"hi"}}],\
                "usage":{"prompt_tokens":50,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":10}}}""";
        AgentReport report = OutputParser.parse(agent(OutputFormat.OPENAI_JSON), "p", body, body);
        assertThat(report.result()).isEqualTo("hi");
        assertThat(report.usage().inputTokens()).isEqualTo(40);
        assertThat(report.usage().cacheReadTokens()).isEqualTo(10);
        assertThat(report.usage().outputTokens()).isEqualTo(7);
    }

    @Test
    void codexEventLinesGiveTheLastAnswerAndTheUsageOfEveryTurn() {
        // The shape `codex exec --json` printed here against the scripted model (REAL-AGENTS.md).
        String events = """
                {"type":"thread.started","thread_id":"th-1"}
                {"type":"turn.started"}
                {"type":"item.completed","item":{"id":"item_0","type":"error","message":"unknown model metadata"}}
                {"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"first"}}
                {"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":200,"output_tokens":30}}
                {"type":"turn.started"}
                {"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"done"}}
                {"type":"turn.completed","usage":{"input_tokens":1500,"cached_input_tokens":1000,"output_tokens":20,                "reasoning_output_tokens":5}}
                """;
        AgentReport report = OutputParser.parse(agent(OutputFormat.CODEX_JSON), "p", events, events);
        assertThat(report.result()).isEqualTo("done");
        assertThat(report.isError()).isFalse();
        assertThat(report.sessionId()).isEqualTo("th-1");
        assertThat(report.usage().source()).isEqualTo(dev.kage.tokens.Usage.UsageSource.AGENT);
        assertThat(report.usage().inputTokens()).isEqualTo(1_500);
        assertThat(report.usage().cacheReadTokens()).isEqualTo(1_200);
        assertThat(report.usage().outputTokens()).isEqualTo(50);
        // 1500 x $3 + 50 x $15 + 1200 cached at the input price, per 1M.
        assertThat(report.usage().costUsd()).isEqualByComparingTo("0.00885");
    }

    @Test
    void geminiStatsAreSummedOverTheModelsTheRunUsed() {
        String body = """
                {"response":"All set.","stats":{"models":{                "gemini-2.5-pro":{"api":{"totalRequests":2},"tokens":{"prompt":900,"candidates":40,"total":960,"cached":100,                "thoughts":20,"tool":0}},                "gemini-2.5-flash":{"tokens":{"prompt":100,"candidates":5,"total":105,"cached":0,"thoughts":0,"tool":10}}},                "tools":{"totalCalls":1},"files":{"totalLinesAdded":3}}}""";
        AgentReport report = OutputParser.parse(agent(OutputFormat.GEMINI_JSON), "p", body, body);
        assertThat(report.result()).isEqualTo("All set.");
        assertThat(report.usage().source()).isEqualTo(dev.kage.tokens.Usage.UsageSource.AGENT);
        assertThat(report.usage().inputTokens()).isEqualTo(910);
        assertThat(report.usage().cacheReadTokens()).isEqualTo(100);
        assertThat(report.usage().outputTokens()).isEqualTo(65);

        AgentReport noStats = OutputParser.parse(agent(OutputFormat.GEMINI_JSON), "Fix it", "{\"response\":\"ok\"}", "");
        assertThat(noStats.usage().source()).as("no stats: counted").isEqualTo(dev.kage.tokens.Usage.UsageSource.TOKENIZER);
    }

    @Test
    void specialTokenTextCountsAsOrdinaryText() {
        assertThat(TokenCounter.count("cl100k_base", "<|endoftext|> hello")).isPositive();
        assertThat(TokenCounter.estimate("abcdefgh")).isEqualTo(2);
    }

    private static AgentConfig agent(OutputFormat format) {
        return new AgentConfig("test", AgentType.COMMAND, List.of("/bin/true", "{prompt}"), format, List.of(), "m", "o200k_base",
                1000, 3.0, 15.0, Path.of("/"), dev.kage.agent.RetryPolicy.DEFAULT);
    }
}
