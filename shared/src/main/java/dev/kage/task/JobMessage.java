package dev.kage.task;

import java.util.HashMap;
import java.util.Map;

/**
 * One job as it travels in a stream entry: everything a worker needs to run it, with explicit field
 * names. Unknown fields are ignored when reading, so workers and coordinators of neighbouring
 * versions can share a queue. Immutable.
 *
 * @param jobId          {@code <taskId>:<agent>}, unique per assignment
 * @param taskId         the task
 * @param tenant         the tenant that submitted it
 * @param agent          the configured agent that runs it
 * @param priority       its stream's priority
 * @param description    the prompt, passed to the agent as an argument, never through a shell
 * @param repo           repository path or URL, empty for the worker's default
 * @param baseBranch     branch the worktree starts from
 * @param timeoutSeconds how long the agent may run
 * @param tokenLimit     the task's token pool size
 * @param attempt        1 for the first run
 * @param rateLimitRetries 429s this attempt has met so far; a rate-limit deferral is not a new attempt
 */
public record JobMessage(
        String jobId,
        String taskId,
        String tenant,
        String agent,
        Priority priority,
        String description,
        String repo,
        String baseBranch,
        int timeoutSeconds,
        long tokenLimit,
        int attempt,
        int rateLimitRetries) {

    /** A job that has met no 429 yet. */
    public JobMessage(String jobId, String taskId, String tenant, String agent, Priority priority, String description, String repo,
                      String baseBranch, int timeoutSeconds, long tokenLimit, int attempt) {
        this(jobId, taskId, tenant, agent, priority, description, repo, baseBranch, timeoutSeconds, tokenLimit, attempt, 0);
    }

    /** The same job as attempt {@code next} (which starts with no 429s). */
    public JobMessage withAttempt(int next) {
        return new JobMessage(jobId, taskId, tenant, agent, priority, description, repo, baseBranch, timeoutSeconds, tokenLimit,
                next, 0);
    }

    /** The same attempt after one more 429. */
    public JobMessage withRateLimitRetry() {
        return new JobMessage(jobId, taskId, tenant, agent, priority, description, repo, baseBranch, timeoutSeconds, tokenLimit,
                attempt, rateLimitRetries + 1);
    }

    public static String jobId(String taskId, String agent) {
        return taskId + ":" + agent;
    }

    public Map<String, String> toFields() {
        Map<String, String> fields = new HashMap<>();
        forEachField(fields::put);
        return fields;
    }

    /** How many fields {@link #toFields} has. */
    public int fieldCount() {
        return rateLimitRetries > 0 ? 12 : 11;
    }

    /** Each of {@link #toFields}'s fields, in a fixed order, without building the map (the batch relay's 100 jobs a call). */
    public void forEachField(java.util.function.BiConsumer<String, String> field) {
        field.accept("job_id", jobId);
        field.accept("task_id", taskId);
        field.accept("tenant", tenant);
        field.accept("agent", agent);
        field.accept("priority", priority.wireName());
        field.accept("description", description);
        field.accept("repo", repo == null ? "" : repo);
        field.accept("base_branch", baseBranch);
        field.accept("timeout", Integer.toString(timeoutSeconds));
        field.accept("token_limit", Long.toString(tokenLimit));
        field.accept("attempt", Integer.toString(attempt));
        if (rateLimitRetries > 0) {
            field.accept("rl_retries", Integer.toString(rateLimitRetries));
        }
    }

    /**
     * @throws IllegalArgumentException naming the field when an entry is not a job (a poison entry)
     */
    public static JobMessage fromFields(Map<String, String> fields) {
        return new JobMessage(
                required(fields, "job_id"),
                required(fields, "task_id"),
                required(fields, "tenant"),
                required(fields, "agent"),
                Priority.fromWireName(required(fields, "priority"))
                        .orElseThrow(() -> new IllegalArgumentException("job field 'priority' is not high|normal|low")),
                required(fields, "description"),
                fields.getOrDefault("repo", ""),
                required(fields, "base_branch"),
                integer(fields, "timeout"),
                longValue(fields, "token_limit"),
                integer(fields, "attempt"),
                fields.containsKey("rl_retries") ? integer(fields, "rl_retries") : 0);
    }

    private static String required(Map<String, String> fields, String name) {
        String value = fields.get(name);
        if (value == null) {
            throw new IllegalArgumentException("job field '" + name + "' is missing");
        }
        return value;
    }

    private static long longValue(Map<String, String> fields, String name) {
        try {
            return Long.parseLong(required(fields, name));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("job field '" + name + "' is not an integer");
        }
    }

    private static int integer(Map<String, String> fields, String name) {
        try {
            return Integer.parseInt(required(fields, name));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("job field '" + name + "' is not an integer");
        }
    }

    /** A copy without the description, for logs. */
    public Map<String, String> logFields() {
        Map<String, String> fields = new HashMap<>(toFields());
        fields.put("description", "<" + description.length() + " chars>");
        return fields;
    }
}
