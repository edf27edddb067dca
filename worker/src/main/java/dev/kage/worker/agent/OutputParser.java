package dev.kage.worker.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.agent.AgentConfig;
import dev.kage.tokens.TokenCounter;
import dev.kage.tokens.Usage;
import dev.kage.tokens.Usage.UsageSource;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.Optional;

/**
 * Reads an agent's standard output according to its configured {@link dev.kage.agent.OutputFormat}.
 * When the output carries no usage report, tokens are counted with the agent's jtokkit encoding.
 * Thread-safe.
 */
public final class OutputParser {
    private static final ObjectMapper JSON = new ObjectMapper();

    private OutputParser() {
    }

    /**
     * @param agent      the agent's configuration (format, encoding, prices)
     * @param prompt     what the agent was given
     * @param stdout     its captured standard output
     * @param stdoutTail the last part of its standard output
     */
    public static AgentReport parse(AgentConfig agent, String prompt, String stdout, String stdoutTail) {
        Optional<AgentReport> reported = switch (agent.output()) {
            case CLAUDE_JSON -> claude(agent, prompt, stdout, stdoutTail);
            case OPENAI_JSON -> openAi(agent, stdout);
            case TEXT -> Optional.empty();
        };
        return reported.orElseGet(() -> counted(agent, prompt, stdout));
    }

    /** Claude Code's {@code --output-format json} object, or the {@code result} line of stream-json. */
    private static Optional<AgentReport> claude(AgentConfig agent, String prompt, String stdout, String stdoutTail) {
        return findResultObject(stdout).or(() -> findResultObject(stdoutTail)).map(node -> {
            JsonNode usage = node.path("usage");
            long input = usage.path("input_tokens").asLong(0);
            long output = usage.path("output_tokens").asLong(0);
            long cacheRead = usage.path("cache_read_input_tokens").asLong(0);
            long cacheWrite = usage.path("cache_creation_input_tokens").asLong(0);
            UsageSource source = UsageSource.AGENT;
            if (!usage.isObject()) {
                // No usage in the report: count the prompt and the answer (the agent's own tool turns are unseen).
                input = TokenCounter.count(agent.encoding(), prompt);
                output = TokenCounter.count(agent.encoding(), node.path("result").asText(""));
                source = UsageSource.TOKENIZER;
            }
            BigDecimal cost = node.hasNonNull("total_cost_usd")
                    ? node.get("total_cost_usd").decimalValue().setScale(6, RoundingMode.HALF_UP)
                    : agent.prices().cost(input, output, cacheRead, cacheWrite);
            return new AgentReport(node.path("result").asText(""), node.path("is_error").asBoolean(false),
                    new Usage(input, output, cacheRead, cacheWrite, cost, source), node.path("session_id").asText(null));
        });
    }

    private static Optional<JsonNode> findResultObject(String text) {
        Optional<JsonNode> whole = tryParse(text.trim());
        if (whole.isPresent() && "result".equals(whole.get().path("type").asText())) {
            return whole;
        }
        String[] lines = text.split("\n");
        for (int i = lines.length - 1; i >= 0; i--) {
            String line = lines[i].trim();
            if (line.startsWith("{")) {
                Optional<JsonNode> node = tryParse(line);
                if (node.isPresent() && "result".equals(node.get().path("type").asText())) {
                    return node;
                }
            }
        }
        return Optional.empty();
    }

    /** An OpenAI chat-completions body: {@code choices[0].message.content} and {@code usage}. */
    private static Optional<AgentReport> openAi(AgentConfig agent, String stdout) {
        return tryParse(stdout.trim()).filter(n -> n.has("choices") || n.has("usage")).map(node -> {
            JsonNode usage = node.path("usage");
            long input = usage.path("prompt_tokens").asLong(0);
            long output = usage.path("completion_tokens").asLong(0);
            long cached = usage.path("prompt_tokens_details").path("cached_tokens").asLong(0);
            BigDecimal cost = agent.prices().cost(input - cached, output, cached, 0);
            String text = node.path("choices").path(0).path("message").path("content").asText("");
            return new AgentReport(text, node.has("error"),
                    new Usage(input - cached, output, cached, 0, cost, usage.isObject() ? UsageSource.AGENT : UsageSource.ESTIMATE),
                    node.path("id").asText(null));
        });
    }

    private static AgentReport counted(AgentConfig agent, String prompt, String stdout) {
        long input = TokenCounter.count(agent.encoding(), prompt);
        long output = TokenCounter.count(agent.encoding(), stdout);
        BigDecimal cost = agent.prices().cost(input, output, 0, 0);
        return new AgentReport(stdout.strip(), false, new Usage(input, output, 0, 0, cost, UsageSource.TOKENIZER), null);
    }

    private static Optional<JsonNode> tryParse(String text) {
        if (text.isEmpty() || text.charAt(0) != '{') {
            return Optional.empty();
        }
        try {
            return Optional.of(JSON.readTree(text));
        } catch (com.fasterxml.jackson.core.JsonProcessingException notJson) {
            return Optional.empty();
        }
    }
}
