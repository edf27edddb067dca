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

    /**
     * The names of a job's fields, in the order {@link #fieldValues} gives their values; {@code rl_retries}, last, only
     * when the job met a 429.
     */
    public static final java.util.List<String> FIELD_NAMES = java.util.List.of("job_id", "task_id", "tenant", "agent",
            "priority", "description", "repo", "base_branch", "timeout", "token_limit", "attempt", "rl_retries");

    public Map<String, String> toFields() {
        String[] values = fieldValues();
        Map<String, String> fields = HashMap.newHashMap(values.length);
        for (int i = 0; i < values.length; i++) {
            fields.put(FIELD_NAMES.get(i), values[i]);
        }
        return fields;
    }

    /** How many fields {@link #toFields} has. */
    public int fieldCount() {
        return rateLimitRetries > 0 ? 12 : 11;
    }

    /**
     * The values of {@link #toFields}, in the order of {@link #FIELD_NAMES}, {@link #fieldCount} of them: what the batch
     * relay writes for 100 jobs a call, without a map per job. An array, so that a writer's loop sends every field
     * through one call site (a callback per field, inlined at each of its twelve sites, made the relay's loop so large
     * that compiling it took C2 a quarter of a second, three times; JFR, session 18).
     */
    public String[] fieldValues() {
        String[] values = new String[fieldCount()];
        values[0] = jobId;
        values[1] = taskId;
        values[2] = tenant;
        values[3] = agent;
        values[4] = priority.wireName();
        values[5] = description;
        values[6] = repo == null ? "" : repo;
        values[7] = baseBranch;
        values[8] = Integer.toString(timeoutSeconds);
        values[9] = Long.toString(tokenLimit);
        values[10] = Integer.toString(attempt);
        if (rateLimitRetries > 0) {
            values[11] = Integer.toString(rateLimitRetries);
        }
        return values;
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
