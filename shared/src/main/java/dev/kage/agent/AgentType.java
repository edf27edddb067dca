package dev.kage.agent;

/** The kinds of agent an operator can configure. */
public enum AgentType {
    /** An operator-defined argv template run as a process, with an output parser. */
    COMMAND("command"),
    /**
     * Does nothing and completes at once with zero usage: no process, worktree, rate-limit permit or
     * budget reservation. For measuring the queue itself; needs no {@code argv}.
     */
    NOOP("noop"),
    /**
     * An OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM, LiteLLM): {@code POST <base_url>/chat/completions};
     * usage from the reply, 429 with {@code Retry-After} and {@code x-ratelimit-*} headers fed to the limiter.
     */
    OPENAI_COMPATIBLE("openai-compatible"),
    /**
     * Anthropic's Messages API: {@code POST <base_url>/v1/messages}; usage from the reply, 429/529 and
     * {@code anthropic-ratelimit-*} headers fed to the limiter.
     */
    ANTHROPIC("anthropic");

    private final String wireName;

    AgentType(String wireName) {
        this.wireName = wireName;
    }

    public String wireName() {
        return wireName;
    }

    /** Whether the agent is an HTTP endpoint rather than a process. */
    public boolean isHttp() {
        return this == OPENAI_COMPATIBLE || this == ANTHROPIC;
    }

    public static AgentType fromWireName(String name) {
        for (AgentType type : values()) {
            if (type.wireName.equals(name)) {
                return type;
            }
        }
        throw new IllegalArgumentException("unknown agent type '" + name + "' (supported: command, noop, openai-compatible, anthropic)");
    }
}
