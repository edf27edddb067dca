package dev.kage.task;

import dev.kage.redis.KageKeys;
import dev.kage.redis.LuaScript;
import dev.kage.redis.RedisPipeline;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.api.async.RedisAsyncCommands;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * A task's live state in Redis ({@code kage:task:{tenant}:<id>}): one field per job with its status
 * ({@code job:<agent>}), the worker running it ({@code worker:<agent>}) and the task's status, for
 * {@code redis-cli} and for answering status requests without Postgres. Postgres stays the durable
 * record. Thread-safe.
 */
public final class LiveTaskState {
    /** How long a task's live state outlives its last change. */
    public static final Duration TTL = Duration.ofDays(7);

    private static final LuaScript START_UNLESS_CANCELLED = LuaScript.load(LiveTaskState.class, "start-unless-cancelled.lua");

    private final KageKeys keys;
    private final RedisCommands<String, String> redis;

    public LiveTaskState(KageKeys keys, RedisCommands<String, String> redis) {
        this.keys = keys;
        this.redis = redis;
    }

    public void created(String tenant, String taskId, Iterable<String> agents) {
        write(tenant, taskId, createdFields(agents));
    }

    private static Map<String, String> createdFields(Iterable<String> agents) {
        Map<String, String> fields = new HashMap<>();
        fields.put("status", TaskStatus.QUEUED.wireName());
        for (String agent : agents) {
            fields.put("job:" + agent, JobStatus.QUEUED.wireName());
        }
        return fields;
    }

    /** {@link #created} on a pipeline's connection, for a caller that sends it with other commands. */
    public CompletableFuture<Void> created(RedisAsyncCommands<String, String> async, String tenant, String taskId,
                                           Iterable<String> agents) {
        String key = keys.task(tenant, taskId);
        return RedisPipeline.all(async.hset(key, createdFields(agents)), async.pexpire(key, TTL.toMillis()));
    }

    public void jobStarted(String tenant, String taskId, String agent, String workerId) {
        write(tenant, taskId, Map.of("job:" + agent, JobStatus.RUNNING.wireName(), "worker:" + agent, workerId,
                "status", TaskStatus.RUNNING.wireName()));
    }

    public void jobFinished(String tenant, String taskId, String agent, JobStatus status, TaskStatus taskStatus) {
        write(tenant, taskId, Map.of("job:" + agent, status.wireName(), "status", taskStatus.wireName()));
    }

    /** A job whose attempt failed waits in the delayed set for its next attempt. */
    public void jobRetrying(String tenant, String taskId, String agent, int nextAttempt, java.time.Instant due) {
        write(tenant, taskId, Map.of("job:" + agent, JobStatus.QUEUED.wireName(), "attempt:" + agent,
                Integer.toString(nextAttempt), "retry_at:" + agent, due.toString()));
    }

    /** Marks the task cancelled: workers skip its queued jobs and stop its running ones. */
    public void cancel(String tenant, String taskId) {
        write(tenant, taskId, Map.of("cancelled", "1", "status", TaskStatus.CANCELLED.wireName()));
    }

    /** {@link #cancel} on a pipeline's connection, for a caller that sends many at once. */
    public CompletableFuture<Void> cancel(RedisAsyncCommands<String, String> async, String tenant, String taskId) {
        String key = keys.task(tenant, taskId);
        return RedisPipeline.all(async.hset(key, Map.of("cancelled", "1", "status", TaskStatus.CANCELLED.wireName())),
                async.pexpire(key, TTL.toMillis()));
    }

    /** What {@link #startUnlessCancelled} found. */
    public enum StartCheck {
        /** Not cancelled: the job is written running. */
        STARTED,
        /** The task is cancelled; nothing was written. */
        CANCELLED,
        /**
         * The task of a job that waited for a worker longer than {@link #MAY_HAVE_EXPIRED} has no live state: it may have
         * expired, and a cancel with it, so nothing here says whether the task was cancelled; nothing was written. The
         * caller asks Postgres.
         */
        NO_LIVE_STATE
    }

    /**
     * How long a job may have waited before its task's missing live state may have expired (a day less than
     * {@link #TTL}, for clocks that differ). A younger job's task without live state never had any (a batch submit
     * writes none): it is written now, with no lookup.
     */
    public static final Duration MAY_HAVE_EXPIRED = TTL.minusDays(1);

    /**
     * {@link #jobStarted} unless the task is cancelled, atomically (one script on the task's key), through a
     * pipeline: a cancel that lands first is always seen, one that lands after finds the job running.
     *
     * @param waited how long the job waited in its stream (since its entry was added)
     */
    public StartCheck startUnlessCancelled(RedisPipeline pipeline, String tenant, String taskId, String agent, String workerId,
                                           Duration waited) {
        Long found = START_UNLESS_CANCELLED.call(pipeline, ScriptOutputType.INTEGER, new String[] {keys.task(tenant, taskId)},
                Long.toString(TTL.toMillis()), waited.compareTo(MAY_HAVE_EXPIRED) < 0 ? "1" : "0", "job:" + agent,
                JobStatus.RUNNING.wireName(), "worker:" + agent, workerId, "status", TaskStatus.RUNNING.wireName());
        return found == null || found == 0 ? StartCheck.STARTED : found == 1 ? StartCheck.CANCELLED : StartCheck.NO_LIVE_STATE;
    }

    /** {@link #jobFinished} on a pipeline's connection, for a caller that sends it with other commands. */
    public CompletableFuture<Void> jobFinished(RedisAsyncCommands<String, String> async, String tenant, String taskId, String agent,
                                               JobStatus status, TaskStatus taskStatus) {
        String key = keys.task(tenant, taskId);
        return RedisPipeline.all(async.hset(key, Map.of("job:" + agent, status.wireName(), "status", taskStatus.wireName())),
                async.pexpire(key, TTL.toMillis()));
    }

    public boolean isCancelled(String tenant, String taskId) {
        return "1".equals(redis.hget(keys.task(tenant, taskId), "cancelled"));
    }

    /** The job's live status, when Redis still holds it. */
    public Optional<JobStatus> job(String tenant, String taskId, String agent) {
        return Optional.ofNullable(redis.hget(keys.task(tenant, taskId), "job:" + agent)).flatMap(JobStatus::fromWireName);
    }

    public Map<String, String> all(String tenant, String taskId) {
        return redis.hgetall(keys.task(tenant, taskId));
    }

    private void write(String tenant, String taskId, Map<String, String> fields) {
        String key = keys.task(tenant, taskId);
        redis.hset(key, fields);
        redis.pexpire(key, TTL.toMillis());
    }
}
