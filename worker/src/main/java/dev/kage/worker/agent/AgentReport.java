package dev.kage.worker.agent;

import dev.kage.tokens.Usage;

/**
 * What an agent run produced, read from its output. Immutable.
 *
 * @param result    the agent's answer or summary text
 * @param isError   the agent itself says the run failed
 * @param usage     tokens and cost, with their source
 * @param sessionId the agent's session id, or {@code null}
 */
public record AgentReport(String result, boolean isError, Usage usage, String sessionId) {
}
