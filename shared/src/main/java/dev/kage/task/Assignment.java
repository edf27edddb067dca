package dev.kage.task;

/**
 * One entry of a task's {@code cli_assignments}: which agent, and how long it may run.
 *
 * @param cliName        a configured agent's name
 * @param timeoutSeconds the run's limit in seconds
 */
public record Assignment(String cliName, int timeoutSeconds) {
}
