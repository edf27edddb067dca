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
        return parse(agent, prompt, stdout, stdoutTail, "");
    }

    /**
     * {@link #parse(AgentConfig, String, String, String)}, where an agent that reports no usage is charged for what it
     * printed on both streams, as the seed counted it: standard error is the agent's output too (its tool chatter, its
     * progress), and was charged nothing.
     *
     * @param stderr its captured standard error
     */
    public static AgentReport parse(AgentConfig agent, String prompt, String stdout, String stdoutTail, String stderr) {
        Optional<AgentReport> reported = switch (agent.output()) {
            case CLAUDE_JSON -> claude(agent, prompt, stdout, stdoutTail);
            case OPENAI_JSON -> openAi(agent, stdout);
            case CODEX_JSON -> codex(agent, stdout);
            case GEMINI_JSON -> gemini(agent, stdout);
            case TEXT -> Optional.empty();
        };
        return reported.orElseGet(() -> counted(agent, prompt, stdout, stderr));
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

    /**
     * Codex's event lines. Its {@code input_tokens} include the cached ones (OpenAI's convention) and its
     * {@code output_tokens} the reasoning ones; a run of several turns reports each turn's usage, summed here.
     */
    private static Optional<AgentReport> codex(AgentConfig agent, String stdout) {
        long input = 0;
        long cached = 0;
        long output = 0;
        boolean usageSeen = false;
        boolean failed = false;
        StringBuilder answer = new StringBuilder();
        String thread = null;
        // The captured output is its head and its tail: turns reported in an omitted middle of a huge output are
        // not seen here (the live count of the output covers them; see JobRunner).
        for (String line : stdout.split("\n")) {
            Optional<JsonNode> event = tryParse(line.trim());
            if (event.isEmpty()) {
                continue;
            }
            JsonNode node = event.get();
            switch (node.path("type").asText()) {
                case "thread.started" -> thread = node.path("thread_id").asText(null);
                case "item.completed" -> {
                    JsonNode item = node.path("item");
                    if ("agent_message".equals(item.path("type").asText())) {
                        answer.setLength(0);
                        answer.append(item.path("text").asText(""));
                    }
                }
                case "turn.completed" -> {
                    JsonNode usage = node.path("usage");
                    input += usage.path("input_tokens").asLong(0);
                    cached += usage.path("cached_input_tokens").asLong(0);
                    output += usage.path("output_tokens").asLong(0);
                    usageSeen |= usage.isObject();
                }
                case "turn.failed", "error" -> failed = true;
                default -> {
                }
            }
        }
        if (!usageSeen) {
            return Optional.empty();
        }
        long uncached = Math.max(0, input - cached);
        return Optional.of(new AgentReport(answer.toString(), failed, new Usage(uncached, output, cached, 0,
                agent.prices().cost(uncached, output, cached, 0), UsageSource.AGENT), thread));
    }

    /**
     * Gemini CLI's JSON object: {@code response}, and per model {@code stats.models.<model>.tokens} with
     * {@code prompt} (including {@code cached}), {@code candidates} and {@code thoughts} (both generated) and
     * {@code tool}; every model the run used is summed.
     */
    private static Optional<AgentReport> gemini(AgentConfig agent, String stdout) {
        return tryParse(stdout.trim()).filter(n -> n.has("response") || n.has("stats")).map(node -> {
            long prompt = 0;
            long cached = 0;
            long output = 0;
            JsonNode models = node.path("stats").path("models");
            for (var entry : models.properties()) {
                JsonNode tokens = entry.getValue().path("tokens");
                prompt += tokens.path("prompt").asLong(0) + tokens.path("tool").asLong(0);
                cached += tokens.path("cached").asLong(0);
                output += tokens.path("candidates").asLong(0) + tokens.path("thoughts").asLong(0);
            }
            long uncached = Math.max(0, prompt - cached);
            UsageSource source = models.isObject() && !models.isEmpty() ? UsageSource.AGENT : UsageSource.ESTIMATE;
            return new AgentReport(node.path("response").asText(""), node.hasNonNull("error"), new Usage(uncached, output, cached,
                    0, agent.prices().cost(uncached, output, cached, 0), source), null);
        }).filter(report -> report.usage().source() == UsageSource.AGENT);
    }

    private static AgentReport counted(AgentConfig agent, String prompt, String stdout, String stderr) {
        long input = TokenCounter.count(agent.encoding(), prompt);
        long output = TokenCounter.count(agent.encoding(), stdout)
                + (stderr == null || stderr.isEmpty() ? 0 : TokenCounter.count(agent.encoding(), stderr));
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
