package dev.kage.agent;

/** The kinds of agent an operator can configure. */
public enum AgentType {
    /** An operator-defined argv template run as a process, with an output parser. */
    COMMAND("command"),
    /**
     * Does nothing and completes at once with zero usage: no process, worktree, rate-limit permit or
     * budget reservation. For measuring the queue itself; needs no {@code argv}.
     */
    NOOP("noop");

    private final String wireName;

    AgentType(String wireName) {
        this.wireName = wireName;
    }

    public String wireName() {
        return wireName;
    }

    public static AgentType fromWireName(String name) {
        for (AgentType type : values()) {
            if (type.wireName.equals(name)) {
                return type;
            }
        }
        throw new IllegalArgumentException("unknown agent type '" + name + "' (supported: command, noop)");
    }
}
