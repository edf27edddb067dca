package dev.kage.queue;

import dev.kage.KageException;
import dev.kage.redis.KageKeys;
import dev.kage.task.JobMessage;
import dev.kage.task.Priority;
import io.lettuce.core.Consumer;
import io.lettuce.core.RedisBusyException;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.XGroupCreateArgs;
import io.lettuce.core.XReadArgs;
import io.lettuce.core.XReadArgs.StreamOffset;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The job streams: one per agent and priority, read through consumer group {@value KageKeys#WORKER_GROUP}.
 * Thread-safe as long as each thread that calls {@link #read} passes its own connection: a blocking
 * {@code XREADGROUP} holds its connection for the whole block time.
 */
public final class JobQueue {
    private final KageKeys keys;
    private final RedisCommands<String, String> redis;

    /**
     * @param redis a shared connection for non-blocking commands
     */
    public JobQueue(KageKeys keys, RedisCommands<String, String> redis) {
        this.keys = keys;
        this.redis = redis;
    }

    /**
     * Creates the agent's streams and their consumer group when missing. The group starts at id 0, so
     * jobs added before any worker existed are still delivered.
     */
    public void ensureStreams(String agent) {
        for (Priority priority : Priority.values()) {
            try {
                redis.xgroupCreate(StreamOffset.from(keys.jobStream(agent, priority), "0"), KageKeys.WORKER_GROUP,
                        XGroupCreateArgs.Builder.mkstream(true));
            } catch (RedisBusyException alreadyThere) {
                // BUSYGROUP: another process created it first
            }
        }
    }

    /** Adds the job to its agent's stream for its priority and returns the entry id. */
    public String enqueue(JobMessage job) {
        return redis.xadd(keys.jobStream(job.agent(), job.priority()), job.toFields());
    }

    /**
     * Claims new entries for {@code consumer}: first a non-blocking look at each priority from high to
     * low, then, when all are empty, one blocking read of all three for at most {@code block}.
     * A blocking read can return one entry per priority when several arrive at once.
     *
     * @param blockingConnection a connection used by this caller only
     */
    public List<ClaimedJob> read(RedisCommands<String, String> blockingConnection, String agent, String consumer, Duration block) {
        Consumer<String> who = Consumer.from(KageKeys.WORKER_GROUP, consumer);
        for (Priority priority : Priority.values()) {
            List<StreamMessage<String, String>> messages = blockingConnection.xreadgroup(who, XReadArgs.Builder.count(1),
                    StreamOffset.lastConsumed(keys.jobStream(agent, priority)));
            if (!messages.isEmpty()) {
                return toJobs(messages);
            }
        }
        @SuppressWarnings("unchecked")
        StreamOffset<String>[] offsets = new StreamOffset[Priority.values().length];
        for (Priority priority : Priority.values()) {
            offsets[priority.ordinal()] = StreamOffset.lastConsumed(keys.jobStream(agent, priority));
        }
        return toJobs(blockingConnection.xreadgroup(who, XReadArgs.Builder.count(1).block(block), offsets));
    }

    /** Acknowledges a finished job so it leaves the pending list. */
    public void ack(ClaimedJob job) {
        redis.xack(job.stream(), KageKeys.WORKER_GROUP, job.entryId());
    }

    /**
     * Moves an entry to the dead-letter stream with the reason, then acknowledges it. The copy keeps
     * every original field, so it can be replayed.
     */
    public void deadLetter(ClaimedJob job, String reason) {
        Map<String, String> fields = new java.util.HashMap<>(job.fields() == null ? Map.of() : job.fields());
        fields.put("dead_reason", reason);
        fields.put("dead_from_stream", job.stream());
        fields.put("dead_from_id", job.entryId());
        redis.xadd(keys.deadLetters(), fields);
        redis.xack(job.stream(), KageKeys.WORKER_GROUP, job.entryId());
    }

    private List<ClaimedJob> toJobs(List<StreamMessage<String, String>> messages) {
        List<ClaimedJob> jobs = new ArrayList<>(messages.size());
        for (StreamMessage<String, String> message : messages) {
            jobs.add(new ClaimedJob(message.getStream(), message.getId(), message.getBody()));
        }
        return jobs;
    }

    /**
     * An entry this consumer now holds in its pending list.
     *
     * @param stream  the stream key
     * @param entryId the stream entry id
     * @param fields  the raw entry; {@link #job()} parses it
     */
    public record ClaimedJob(String stream, String entryId, Map<String, String> fields) {
        /**
         * @throws MalformedJobException when the entry is not a job (a poison entry)
         */
        public JobMessage job() {
            try {
                return JobMessage.fromFields(fields == null ? Map.of() : fields);
            } catch (IllegalArgumentException e) {
                throw new MalformedJobException(stream + " " + entryId + ": " + e.getMessage());
            }
        }
    }

    /** A stream entry that cannot be read as a job; retrying never helps. */
    public static final class MalformedJobException extends KageException {
        public MalformedJobException(String message) {
            super(message, false);
        }
    }
}
