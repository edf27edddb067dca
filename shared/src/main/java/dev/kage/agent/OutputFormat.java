package dev.kage.agent;

/** How an agent's standard output is read for its result and usage. */
public enum OutputFormat {
    /** Plain text; usage is counted with the agent's tokenizer. */
    TEXT("text"),
    /** Claude Code's {@code --output-format json} object (or the last {@code result} line of stream-json). */
    CLAUDE_JSON("claude-json"),
    /** An OpenAI chat-completions response body with {@code usage}. */
    OPENAI_JSON("openai-json"),
    /**
     * Codex's {@code exec --json} event lines: the answer from {@code item.completed} {@code agent_message} items,
     * usage summed over {@code turn.completed} events.
     */
    CODEX_JSON("codex-json"),
    /** Gemini CLI's {@code --output-format json} object: {@code response}, and {@code stats.models.*.tokens}. */
    GEMINI_JSON("gemini-json");

    private final String wireName;

    OutputFormat(String wireName) {
        this.wireName = wireName;
    }

    public String wireName() {
        return wireName;
    }

    public static OutputFormat fromWireName(String name) {
        for (OutputFormat format : values()) {
            if (format.wireName.equals(name)) {
                return format;
            }
        }
        throw new IllegalArgumentException("unknown output format '" + name + "' (expected text, claude-json, openai-json, codex-json or gemini-json)");
    }
}
