package dev.kage.redis;

import dev.kage.task.Priority;

/**
 * Every Redis key Kage uses, and nothing else builds one. Keys read well in {@code redis-cli}; the part
 * in braces is the Redis Cluster hash tag, so what one script or one {@code XREADGROUP} touches shares
 * a slot. Immutable and thread-safe.
 *
 * <table>
 *   <caption>Keys (namespace {@code kage})</caption>
 *   <tr><td>{@code kage:jobs:{agent}:priority}</td><td>stream, group {@code workers}: queued jobs</td></tr>
 *   <tr><td>{@code kage:jobs:{agent}:delayed}</td><td>sorted set by due time (ms): retries and deferrals</td></tr>
 *   <tr><td>{@code kage:jobs:{agent}:once:job#attempt}</td><td>string with TTL: the job was enqueued</td></tr>
 *   <tr><td>{@code kage:jobs:dead}</td><td>stream: dead letters, replayable</td></tr>
 *   <tr><td>{@code kage:jobs:{agent}:replayed:letter-id}</td><td>string with TTL: the letter was replayed</td></tr>
 *   <tr><td>{@code kage:outbox:{agent}}</td><td>list: outcomes waiting for Postgres</td></tr>
 *   <tr><td>{@code kage:outbox:{agent}:refused}</td><td>list: outcomes Postgres refused for their content, for an operator</td></tr>
 *   <tr><td>{@code kage:task:{tenant}:id}</td><td>hash: live task and per-job state</td></tr>
 *   <tr><td>{@code kage:budget:{tenant}:task:id}</td><td>hash: a task's pool (tokens, micro-USD), its settled holds</td></tr>
 *   <tr><td>{@code kage:budget:{tenant}:day:2026-11-28}, {@code :month:2026-11}</td><td>hash: a tenant's pools per period (UTC)</td></tr>
 *   <tr><td>{@code kage:budget:{tenant}:holds}, {@code :holds:expiry}</td><td>hash and sorted set: open reservations, when they lapse (ms)</td></tr>
 *   <tr><td>{@code kage:budget:{tenant}:limits}</td><td>hash: an operator's limits for the tenant's period pools</td></tr>
 *   <tr><td>{@code kage:budget:agent:{agent}:day:...}, {@code :month:...}, {@code :holds}, {@code :holds:expiry}</td><td>an agent's pools across tenants</td></tr>
 *   <tr><td>{@code kage:budget:agent:{agent}:task:id}</td><td>hash: a task's current and settled holds in the agent's pools</td></tr>
 *   <tr><td>{@code kage:budget:holdsets}</td><td>set: every holds hash, for the sweeper</td></tr>
 *   <tr><td>{@code kage:budget:defaults}</td><td>hash: the fleet's default limits, every tenant's and each agent's (last worker started)</td></tr>
 *   <tr><td>{@code kage:rl:{group}}</td><td>hash: a limit group's limit, source, adaptive rate</td></tr>
 *   <tr><td>{@code kage:rl:{group}:requests}, {@code :tokens}</td><td>sorted sets by grant time (µs): permits in the window</td></tr>
 *   <tr><td>{@code kage:rl:{group}:cooldown}</td><td>string with TTL: fleet-wide pause after a 429</td></tr>
 *   <tr><td>{@code kage:rl:{group}:waiting:priority}</td><td>sorted set: callers waiting for a permit</td></tr>
 *   <tr><td>{@code kage:rl:groups}</td><td>set: every limit group set up</td></tr>
 *   <tr><td>{@code kage:worker:id}</td><td>hash with TTL: heartbeat</td></tr>
 *   <tr><td>{@code kage:workers}</td><td>set: ids of workers with a heartbeat (readers drop expired ones)</td></tr>
 *   <tr><td>{@code kage:events}</td><td>capped stream of lifecycle events</td></tr>
 * </table>
 */
public final class KageKeys {
    /** The consumer group every worker reads the job streams through. */
    public static final String WORKER_GROUP = "workers";

    private final String namespace;

    public KageKeys(String namespace) {
        this.namespace = namespace;
    }

    public String namespace() {
        return namespace;
    }

    public String jobStream(String agent, Priority priority) {
        return namespace + ":jobs:{" + agent + "}:" + priority.wireName();
    }

    /** The agent's three streams, high, normal and low, as the scripts that move jobs into them take them. */
    public String[] jobStreams(String agent) {
        return new String[] {jobStream(agent, Priority.HIGH), jobStream(agent, Priority.NORMAL), jobStream(agent, Priority.LOW)};
    }

    /**
     * The agent's delayed set. One per agent (not one global set as first drafted) so that moving a
     * due job into its stream is one script on one hash tag.
     */
    public String delayedJobs(String agent) {
        return namespace + ":jobs:{" + agent + "}:delayed";
    }

    /** Marker that a job's attempt was added to its stream, so a second enqueue adds nothing. */
    public String enqueued(String agent, String jobId, int attempt) {
        return namespace + ":jobs:{" + agent + "}:once:" + jobId + "#" + attempt;
    }

    /**
     * Marker that a dead letter of the agent was replayed, so two replays of one letter enqueue it once. Under the
     * agent's hash tag, so one script marks it and adds the job (before session 9: {@link #replayedBefore}).
     */
    public String replayed(String agent, String deadLetterId) {
        return namespace + ":jobs:{" + agent + "}:replayed:" + deadLetterId;
    }

    /** The replayed mark as coordinators before session 9 wrote it (no hash tag); read for 7 days after an upgrade. */
    public String replayedBefore(String deadLetterId) {
        return namespace + ":jobs:dead:replayed:" + deadLetterId;
    }

    /** Outcomes a worker could not write to Postgres yet, flushed when it answers again. */
    public String outbox(String agent) {
        return namespace + ":outbox:{" + agent + "}";
    }

    /**
     * Outcomes Postgres refused for what they hold, not for being away (a value out of range, a task row that does not
     * exist): kept for an operator, out of the outbox, whose flush would otherwise stop at them for ever.
     */
    public String outboxRefused(String agent) {
        return namespace + ":outbox:{" + agent + "}:refused";
    }

    /** Prefix of every worker heartbeat key. */
    public String workerPrefix() {
        return namespace + ":worker:";
    }

    /**
     * Set of the ids of workers that have a heartbeat, or had one lately: a worker adds itself with each beat and
     * removes itself when it stops; a reader drops the ids whose heartbeat expired. Lets the fleet be listed without a
     * {@code SCAN} of the whole keyspace.
     */
    public String workers() {
        return namespace + ":workers";
    }

    public String deadLetters() {
        return namespace + ":jobs:dead";
    }

    public String task(String tenant, String taskId) {
        return namespace + ":task:{" + tenant + "}:" + taskId;
    }

    public String taskBudget(String tenant, String taskId) {
        return namespace + ":budget:{" + tenant + "}:task:" + taskId;
    }

    /** A tenant's pool for one period, e.g. {@code day:2026-11-28}; shares the tenant's hash tag with its task pools. */
    public String tenantBudget(String tenant, String period) {
        return namespace + ":budget:{" + tenant + "}:" + period;
    }

    /** Open reservations of the tenant's pools (hash: hold id to amounts and pools). */
    public String tenantHolds(String tenant) {
        return namespace + ":budget:{" + tenant + "}:holds";
    }

    /** Operator-set limits of the tenant's period pools (hash: {@code day_tokens}, {@code day_usd}, ...). */
    public String tenantBudgetLimits(String tenant) {
        return namespace + ":budget:{" + tenant + "}:limits";
    }

    /** An agent's pool across tenants for one period: its own hash tag, reserved in a second step. */
    public String agentBudget(String agent, String period) {
        return namespace + ":budget:agent:{" + agent + "}:" + period;
    }

    /**
     * The bookkeeping of a task's holds in an agent's pools (hash: {@code j:<job>} its current hold, {@code s:<hold>}
     * settled holds): per task, not per period, so a hold taken before midnight is still known after it.
     */
    public String agentTaskHolds(String agent, String taskId) {
        return namespace + ":budget:agent:{" + agent + "}:task:" + taskId;
    }

    public String agentHolds(String agent) {
        return namespace + ":budget:agent:{" + agent + "}:holds";
    }

    public String agentBudgetLimits(String agent) {
        return namespace + ":budget:agent:{" + agent + "}:limits";
    }

    /** When each hold of a holds hash lapses (sorted set, ms on the Redis clock). */
    public static String holdExpiry(String holds) {
        return holds + ":expiry";
    }

    /**
     * The fleet's default period limits where no operator set others: {@code tenant:day_tokens} …, {@code
     * agent:<name>:day_tokens} … (tokens, micro-USD); the last worker started publishes its configuration.
     */
    public String budgetDefaults() {
        return namespace + ":budget:defaults";
    }

    /** Every holds hash in use, so a sweeper finds holds whose tenant never reserves again. */
    public String holdSets() {
        return namespace + ":budget:holdsets";
    }

    /** A limit group's hash: limit, window, tokens, guard, source, adaptive rate. */
    public String limiter(String group) {
        return namespace + ":rl:{" + group + "}";
    }

    /** Requests granted in a group's window, scored by grant time (µs, Redis server clock). */
    public String limiterRequests(String group) {
        return limiter(group) + ":requests";
    }

    /** Token grants in a group's window, scored by grant time (µs). */
    public String limiterTokens(String group) {
        return limiter(group) + ":tokens";
    }

    /** Callers of one priority waiting for a permit of the group, scored by when their registration lapses. */
    public String limiterWaiting(String group, Priority priority) {
        return limiter(group) + ":waiting:" + priority.wireName();
    }

    /** The group's fleet-wide pause after a 429: exists while it lasts. */
    public String cooldown(String group) {
        return limiter(group) + ":cooldown";
    }

    /** Every limit group a worker or an operator has set up. */
    public String limitGroups() {
        return namespace + ":rl:groups";
    }

    public String worker(String workerId) {
        return namespace + ":worker:" + workerId;
    }

    public String events() {
        return namespace + ":events";
    }
}
