package dev.kage.queue;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.KageException;
import dev.kage.redis.KageKeys;
import dev.kage.redis.LuaScript;
import dev.kage.task.JobMessage;
import dev.kage.task.Priority;
import io.lettuce.core.Consumer;
import io.lettuce.core.Limit;
import io.lettuce.core.Range;
import io.lettuce.core.RedisBusyException;
import io.lettuce.core.RedisException;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.XClaimArgs;
import io.lettuce.core.XGroupCreateArgs;
import io.lettuce.core.XPendingArgs;
import io.lettuce.core.XReadArgs;
import io.lettuce.core.XReadArgs.StreamOffset;
import io.lettuce.core.XTrimArgs;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.models.stream.PendingMessage;
import io.lettuce.core.models.stream.PendingMessages;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;

/**
 * The job streams — one per agent and priority, read through consumer group
 * {@value KageKeys#WORKER_GROUP} — with the agent's delayed set and the dead-letter stream. Every
 * step that must not lose or duplicate a job (enqueue once, ack and reschedule, hand back, refresh
 * only what one still owns) is one Lua script on the agent's hash tag. Thread-safe as long as each
 * thread that calls {@link #read} passes its own connection: a blocking {@code XREADGROUP} holds its
 * connection for the whole block time.
 *
 * <p><b>Priority rule.</b> A claim loop looks at {@code high} first, then {@code normal}, then
 * {@code low}; but every 4th read looks at {@code normal} first and every 10th at {@code low} first.
 * Under a backlog of all three, normal jobs therefore get at least about a fifth and low jobs a tenth
 * of the claims: no priority starves.
 */
public final class JobQueue {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(JobQueue.class);
    private static final Duration CAP_WARNING_EVERY = Duration.ofMinutes(1);
    /**
     * How long the marker that a job attempt was enqueued lives, at most: the worker that records the job's outcome
     * shortens it to {@link #ENQUEUE_MARKER_AFTER_OUTCOME} ({@link #forgetEnqueued}), since from then on the result row
     * says the job needs no enqueue.
     */
    public static final Duration ENQUEUE_MARKER_TTL = Duration.ofDays(7);

    /**
     * How long a job attempt's enqueue-once marker outlives the commit of its result row. Lettuce sends a command again
     * after a reconnect when its reply never came (until its {@code REDIS_COMMAND_TIMEOUT}, 10 s): an enqueue that ran,
     * whose reply a dropped connection lost, is sent again, and without its marker it would add a job that may have run
     * and finished meanwhile, to run a second time (PITFALLS 5). A minute covers every such resend; deleting the marker
     * at once did not.
     */
    public static final Duration ENQUEUE_MARKER_AFTER_OUTCOME = Duration.ofMinutes(1);

    private static final LuaScript ENQUEUE = LuaScript.load(JobQueue.class, "enqueue.lua");
    private static final LuaScript ENQUEUE_MANY = LuaScript.load(JobQueue.class, "enqueue-many.lua");
    private static final LuaScript DEFER = LuaScript.load(JobQueue.class, "defer.lua");
    private static final LuaScript PROMOTE = LuaScript.load(JobQueue.class, "promote.lua");
    private static final LuaScript HANDBACK = LuaScript.load(JobQueue.class, "handback.lua");
    private static final LuaScript REPLAY = LuaScript.load(JobQueue.class, "replay.lua");
    private static final LuaScript REFRESH = LuaScript.load(JobQueue.class, "refresh.lua");
    private static final LuaScript DELCONSUMER = LuaScript.load(JobQueue.class, "delconsumer.lua");
    private static final ObjectMapper JSON = new ObjectMapper();

    private final KageKeys keys;
    /** Dead letters dropped over {@code KAGE_DEAD_LETTER_MAX} since the last WARN, and when that was (nanoTime). */
    private final java.util.concurrent.atomic.AtomicLong droppedOverCap = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong lastCapWarning =
            new java.util.concurrent.atomic.AtomicLong(System.nanoTime() - CAP_WARNING_EVERY.toNanos() - 1);
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

    /**
     * Adds the job's attempt to its stream unless that attempt was added before (a reconciler racing
     * the coordinator, a replayed command).
     *
     * @return the entry id, or empty when the attempt had been enqueued already
     */
    public Optional<String> enqueue(JobMessage job) {
        String id = ENQUEUE.run(redis, ScriptOutputType.VALUE, enqueueKeys(job), enqueueArgs(job));
        return Optional.ofNullable(id);
    }

    /** enqueue.lua's keys for the job: its stream and its attempt's enqueue-once marker. */
    private String[] enqueueKeys(JobMessage job) {
        return new String[] {keys.jobStream(job.agent(), job.priority()), keys.enqueued(job.agent(), job.jobId(), job.attempt())};
    }

    /** enqueue.lua's arguments: the marker's TTL, then the entry's fields. */
    private static String[] enqueueArgs(JobMessage job) {
        return flatten(Long.toString(ENQUEUE_MARKER_TTL.toMillis()), job.toFields());
    }

    /**
     * {@link #enqueue} on a pipeline's connection, for a caller that sends it with other commands. Goes as
     * {@code EVALSHA}: the reply fails with {@link io.lettuce.core.RedisNoScriptException} on a Redis that has not seen
     * the script (restarted since), and the caller then enqueues through {@link #enqueue}, which loads it; a second
     * enqueue of the same attempt is a no-op either way.
     *
     * @return the entry id, or {@code null} when this attempt had been enqueued before
     */
    public io.lettuce.core.RedisFuture<String> enqueue(io.lettuce.core.api.async.RedisAsyncCommands<String, String> async,
                                                       JobMessage job) {
        return async.evalsha(ENQUEUE.sha(), ScriptOutputType.VALUE, enqueueKeys(job), enqueueArgs(job));
    }

    /** The names this queue's keys have. */
    public KageKeys keys() {
        return keys;
    }

    /**
     * Whether this attempt of the job was ever enqueued, by its enqueue-once marker (kept
     * {@link #ENQUEUE_MARKER_TTL}, or until the job's outcome is recorded). The marker and the stream entry are written
     * by one script, so a Redis that lost the entry with the last writes before a crash lost the marker too. A missing
     * marker alone proves nothing: ask Postgres for the job's outcome <em>after</em> this call.
     */
    public boolean wasEnqueued(JobMessage job) {
        return redis.exists(keys.enqueued(job.agent(), job.jobId(), job.attempt())) > 0;
    }

    /**
     * {@link #wasEnqueued} for many jobs in one pipelined round trip (a start-up check reads every open task's markers:
     * one round trip each made a coordinator with a large backlog take seconds per 100,000 jobs).
     *
     * @return the jobs among {@code jobs} whose marker exists, by identity
     * @throws RedisException when Redis fails any of the checks
     */
    public java.util.Set<JobMessage> enqueuedAmong(List<JobMessage> jobs) {
        if (jobs.isEmpty()) {
            return java.util.Set.of();
        }
        var async = redis.getStatefulConnection().async();
        List<io.lettuce.core.RedisFuture<Long>> replies = new ArrayList<>(jobs.size());
        for (JobMessage job : jobs) {
            replies.add(async.exists(keys.enqueued(job.agent(), job.jobId(), job.attempt())));
        }
        long timeout = redis.getStatefulConnection().getTimeout().toNanos();
        java.util.Set<JobMessage> found = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (int i = 0; i < jobs.size(); i++) {
            if (io.lettuce.core.LettuceFutures.awaitOrCancel(replies.get(i), timeout, java.util.concurrent.TimeUnit.NANOSECONDS) > 0) {
                found.add(jobs.get(i));
            }
        }
        return found;
    }

    /** The Redis server's {@code run_id} (a new one after every restart) and how long it has been up. */
    public ServerProcess server() {
        return server(redis);
    }

    /**
     * {@link #server()} asked on {@code connection}: on the connection a read came over, right after the read, it names
     * the server that answered the read or one that started later.
     */
    public static ServerProcess server(RedisCommands<String, String> connection) {
        String runId = null;
        long uptime = -1;
        long timeMicros = 0;
        for (String line : connection.info("server").split("\r?\n")) {
            if (line.startsWith("run_id:")) {
                runId = line.substring("run_id:".length()).strip();
            } else if (line.startsWith("uptime_in_seconds:")) {
                uptime = Long.parseLong(line.substring("uptime_in_seconds:".length()).strip());
            } else if (line.startsWith("server_time_usec:")) {
                timeMicros = Long.parseLong(line.substring("server_time_usec:".length()).strip());
            }
        }
        if (runId == null) {
            throw new IllegalStateException("INFO server has no run_id");
        }
        // Not every server says (some proxies do not): unknown counts as just started, the safe side.
        return new ServerProcess(runId, Duration.ofSeconds(Math.max(0, uptime)), timeMicros / 1000);
    }

    /**
     * @param runId      {@code run_id}
     * @param uptime     {@code uptime_in_seconds}
     * @param timeMillis {@code server_time_usec} in ms (Redis's clock when it answered); 0 when it did not say
     */
    public record ServerProcess(String runId, Duration uptime, long timeMillis) {
        /**
         * Whether a server process before this one may have delivered the entry: its id (Redis's ms when it was added) is
         * older than this process, or may be. Uptime is the difference of two whole seconds (now's and the start's), so
         * the process started less than a second either side of {@code timeMillis - uptime}: entries of its first two
         * seconds count too, and every entry does when the server does not tell its time.
         */
        public boolean mayPredate(String entryId) {
            if (timeMillis <= 0) {
                return true;
            }
            try {
                return Long.parseLong(entryId.substring(0, entryId.indexOf('-'))) < timeMillis - uptime.toMillis() + 1000;
            } catch (RuntimeException notAnId) {
                return true;
            }
        }
    }

    /**
     * Jobs one enqueue-many.lua call adds at most: about a millisecond of Redis's time, so other clients' commands
     * never wait behind a long script.
     */
    static final int ENQUEUE_CHUNK = 100;

    /**
     * Enqueues many jobs at once, each attempt once as with {@link #enqueue}: one script call per agent and
     * {@value #ENQUEUE_CHUNK} jobs (enqueue-many.lua), where a call per job cost each job a command's encoding,
     * reply and script lookup. The calls are pipelined ({@link LuaScript#sendAll}): sent in order, without waiting for
     * one reply before sending the next.
     *
     * @return how many were added (the others had been enqueued before)
     */
    public int enqueueAll(List<JobMessage> jobs) {
        return added(sendEnqueueAll(jobs));
    }

    /** How many jobs the calls of {@link #sendEnqueueAll} added, once they are all answered. */
    public static int added(LuaScript.Sent<Long> sent) {
        int added = 0;
        for (Long count : sent.await()) {
            added += count.intValue();
        }
        return added;
    }

    /** {@link #enqueueAll} without waiting for the replies: {@link #added} waits for them. */
    public LuaScript.Sent<Long> sendEnqueueAll(List<JobMessage> jobs) {
        Map<String, List<JobMessage>> byAgent = new java.util.LinkedHashMap<>();
        for (JobMessage job : jobs) {
            byAgent.computeIfAbsent(job.agent(), agent -> new ArrayList<>()).add(job);
        }
        List<LuaScript.Call> calls = new ArrayList<>();
        for (var entry : byAgent.entrySet()) {
            List<JobMessage> ofAgent = entry.getValue();
            for (int from = 0; from < ofAgent.size(); from += ENQUEUE_CHUNK) {
                calls.add(enqueueCall(entry.getKey(), ofAgent.subList(from, Math.min(from + ENQUEUE_CHUNK, ofAgent.size()))));
            }
        }
        return ENQUEUE_MANY.<Long>sendAll(redis, ScriptOutputType.INTEGER, calls);
    }

    /** The job fields' names, encoded once for every call of {@link #enqueueCall}. */
    private static final LuaScript.Names JOB_FIELD_NAMES = new LuaScript.Names(JobMessage.FIELD_NAMES);

    /**
     * One enqueue-many.lua call for jobs of one agent. Small loops of small steps: the C2 compiler compiles this early
     * and quickly (the same work written with a callback per field took it 240–290 ms a compilation, JFR, session 18).
     */
    private LuaScript.Call enqueueCall(String agent, List<JobMessage> chunk) {
        String[] scriptKeys = java.util.Arrays.copyOf(keys.jobStreams(agent), 3 + chunk.size());
        int expectedBytes = 16;
        for (int i = 0; i < chunk.size(); i++) {
            JobMessage job = chunk.get(i);
            scriptKeys[3 + i] = keys.enqueued(agent, job.jobId(), job.attempt());
            expectedBytes += 400 + lengthOf(job.description()) + lengthOf(job.baseBranch()) + lengthOf(job.repo());
        }
        LuaScript.Call call = new LuaScript.Call(scriptKeys, expectedBytes).arg(ENQUEUE_MARKER_TTL.toMillis());
        for (JobMessage job : chunk) {
            String[] values = job.fieldValues();
            call.arg(job.priority().wireName()).arg(2L * values.length).pairs(JOB_FIELD_NAMES, values);
        }
        return call;
    }

    private static int lengthOf(String text) {
        return text == null ? 0 : text.length();
    }

    /**
     * Claims up to {@code count} new entries for {@code consumer} without blocking: each priority in
     * the order the priority rule gives for {@code round}, taking what the first non-empty one has.
     *
     * @param connection a connection used by this caller only
     * @param round      how many reads this loop made before, for the priority rule
     * @return empty when every stream of the agent is empty
     */
    public List<ClaimedJob> poll(RedisCommands<String, String> connection, String agent, String consumer, long round, int count) {
        Consumer<String> who = Consumer.from(KageKeys.WORKER_GROUP, consumer);
        for (Priority priority : order(round)) {
            List<StreamMessage<String, String>> messages = connection.xreadgroup(who, XReadArgs.Builder.count(count),
                    StreamOffset.lastConsumed(keys.jobStream(agent, priority)));
            if (!messages.isEmpty()) {
                return toJobs(messages);
            }
        }
        return List.of();
    }

    /**
     * Waits up to {@code block} for new entries in any of the agent's streams and claims at most one per
     * priority: up to three when several arrive at once.
     *
     * @param blockingConnection a connection used by this caller only; it is held for the whole wait
     */
    public List<ClaimedJob> await(RedisCommands<String, String> blockingConnection, String agent, String consumer, Duration block) {
        @SuppressWarnings("unchecked")
        StreamOffset<String>[] offsets = new StreamOffset[Priority.values().length];
        for (Priority priority : Priority.values()) {
            offsets[priority.ordinal()] = StreamOffset.lastConsumed(keys.jobStream(agent, priority));
        }
        return toJobs(blockingConnection.xreadgroup(Consumer.from(KageKeys.WORKER_GROUP, consumer),
                XReadArgs.Builder.count(1).block(block), offsets));
    }

    /**
     * {@link #poll} up to {@code count} entries, or when every stream is empty, {@link #await} for at
     * most {@code block}.
     */
    public List<ClaimedJob> read(RedisCommands<String, String> blockingConnection, String agent, String consumer, Duration block,
                                 long round, int count) {
        List<ClaimedJob> polled = poll(blockingConnection, agent, consumer, round, count);
        return polled.isEmpty() ? await(blockingConnection, agent, consumer, block) : polled;
    }

    /** One entry at most, in priority order for {@code round}. */
    public List<ClaimedJob> read(RedisCommands<String, String> blockingConnection, String agent, String consumer, Duration block,
                                 long round) {
        return read(blockingConnection, agent, consumer, block, round, 1);
    }

    /** One entry at most, for the first round. */
    public List<ClaimedJob> read(RedisCommands<String, String> blockingConnection, String agent, String consumer, Duration block) {
        return read(blockingConnection, agent, consumer, block, 0, 1);
    }

    /** The order priorities are looked at in read number {@code round}; see the class comment. */
    public static List<Priority> order(long round) {
        if (round % 10 == 9) {
            return List.of(Priority.LOW, Priority.HIGH, Priority.NORMAL);
        }
        if (round % 4 == 3) {
            return List.of(Priority.NORMAL, Priority.HIGH, Priority.LOW);
        }
        return List.of(Priority.HIGH, Priority.NORMAL, Priority.LOW);
    }

    /** Acknowledges a finished job so it leaves the pending list. */
    public void ack(ClaimedJob job) {
        redis.xack(job.stream(), KageKeys.WORKER_GROUP, job.entryId());
    }

    /**
     * Lets the enqueue-once markers of the job's attempts up to its current one expire within
     * {@link #ENQUEUE_MARKER_AFTER_OUTCOME}, once its outcome is in Postgres: the reconciler skips a job with a result
     * row, so the markers only cost memory from then on (at a thousand tasks a second, their 7-day TTL alone would keep
     * ~600 million), but a resent enqueue must still find them. Never call it before the row is committed: a job with
     * neither marker nor row counts as lost with Redis's last writes, and is enqueued again.
     *
     * @return the reply to the last marker's {@code PEXPIRE}
     */
    public io.lettuce.core.RedisFuture<Boolean> forgetEnqueued(io.lettuce.core.api.async.RedisAsyncCommands<String, String> async,
                                                              JobMessage job) {
        io.lettuce.core.RedisFuture<Boolean> last = null;
        for (int attempt = 1; attempt <= Math.max(1, job.attempt()); attempt++) {
            last = async.pexpire(keys.enqueued(job.agent(), job.jobId(), attempt), ENQUEUE_MARKER_AFTER_OUTCOME.toMillis());
        }
        return last;
    }

    /** {@link #ack} on a pipeline's connection, for a caller that sends it with other commands. */
    public io.lettuce.core.RedisFuture<Long> ack(io.lettuce.core.api.async.RedisAsyncCommands<String, String> async, ClaimedJob job) {
        return async.xack(job.stream(), KageKeys.WORKER_GROUP, job.entryId());
    }

    /**
     * Acknowledges the entry and schedules {@code next} (the next attempt, or the same one after a
     * rate-limit deferral) {@code delay} from now, atomically. "Now" is the Redis server's clock, so
     * a worker with a skewed clock schedules neither early nor late.
     *
     * @return when the job is due, by the server's clock
     */
    public Instant defer(ClaimedJob claimed, JobMessage next, Duration delay) {
        return defer(claimed, next, delay, "").orElseThrow(() -> new IllegalStateException(
                "entry " + claimed.key() + " is no longer pending; nothing deferred"));
    }

    /**
     * As {@link #defer(ClaimedJob, JobMessage, Duration)}, only while {@code consumer} still owns the entry.
     *
     * @return when the job is due, or empty when the entry is no longer {@code consumer}'s (another worker
     *         reclaimed it, or it was acknowledged): then nothing changed, and the job is not run twice
     */
    public Optional<Instant> defer(ClaimedJob claimed, JobMessage next, Duration delay, String consumer) {
        Long due = DEFER.run(redis, ScriptOutputType.INTEGER, new String[] {claimed.stream(), keys.delayedJobs(next.agent())},
                KageKeys.WORKER_GROUP, claimed.entryId(), Long.toString(Math.max(0, delay.toMillis())), delayedMember(next),
                consumer);
        return due == null || due < 0 ? Optional.empty() : Optional.of(Instant.ofEpochMilli(due));
    }

    /**
     * Moves the agent's delayed jobs that are due by the Redis server's clock to their streams; safe
     * to call from every process at once.
     */
    public long promoteDue(String agent) {
        String[] streams = keys.jobStreams(agent);
        Long moved = PROMOTE.run(redis, ScriptOutputType.INTEGER, new String[] {keys.delayedJobs(agent), streams[0], streams[1],
                streams[2]}, "100");
        return moved == null ? 0 : moved;
    }

    /** Jobs waiting in the agent's delayed set. */
    public long delayed(String agent) {
        return redis.zcard(keys.delayedJobs(agent));
    }

    /** Entries in the dead-letter stream (all agents). */
    public long deadCount() {
        return redis.xlen(keys.deadLetters());
    }

    /**
     * How one agent's stream of one priority stands now (an operator's view: XLEN, XINFO GROUPS, XPENDING and
     * the oldest waiting entry's id). Not atomic: the figures are read one after another.
     */
    @SuppressWarnings("unchecked")
    public Depth depth(String agent, Priority priority) {
        String stream = keys.jobStream(agent, priority);
        if (redis.exists(stream) == 0) {
            return new Depth(agent, priority, stream, 0, 0, 0, 0, 0);
        }
        long length = redis.xlen(stream);
        Map<String, Object> group = Map.of();
        for (Object entry : redis.xinfoGroups(stream)) {
            List<Object> pairs = (List<Object>) entry;
            Map<String, Object> map = new HashMap<>();
            for (int i = 0; i + 1 < pairs.size(); i += 2) {
                map.put(String.valueOf(pairs.get(i)), pairs.get(i + 1));
            }
            if (KageKeys.WORKER_GROUP.equals(String.valueOf(map.get("name")))) {
                group = map;
            }
        }
        long pending = group.get("pending") instanceof Number n ? n.longValue() : 0;
        long consumers = group.get("consumers") instanceof Number n ? n.longValue() : 0;
        String lastDelivered = String.valueOf(group.getOrDefault("last-delivered-id", "0-0"));
        var undelivered = redis.xrange(stream, io.lettuce.core.Range.create(lastDelivered, "+"), io.lettuce.core.Limit.from(2))
                .stream().filter(m -> !m.getId().equals(lastDelivered)).findFirst();
        // XINFO GROUPS reports the lag (entries not yet delivered) from Redis 7.0; before that it cannot say.
        long waiting = group.get("lag") instanceof Number n ? n.longValue() : -1;
        List<String> ids = new ArrayList<>();
        undelivered.ifPresent(m -> ids.add(m.getId()));
        if (pending > 0) {
            var summary = redis.xpending(stream, KageKeys.WORKER_GROUP);
            String first = summary.getMessageIds().getLower().getValue();
            if (first != null) {
                ids.add(first);
            }
        }
        long oldestMs = ids.stream().mapToLong(id -> Long.parseLong(id.substring(0, id.indexOf('-')))).min().orElse(0);
        long ageMs = oldestMs == 0 ? 0 : Math.max(0, serverMillis() - oldestMs);
        return new Depth(agent, priority, stream, length, waiting, pending, consumers, ageMs);
    }

    /** Redis's clock now ({@code TIME}), epoch ms: the clock stream entry ids are made with. */
    public long serverMillis() {
        List<String> time = redis.time();
        return Long.parseLong(time.get(0)) * 1000 + Long.parseLong(time.get(1)) / 1000;
    }

    /**
     * Gives a claimed job back for another worker to take at once: acknowledges it and adds the same
     * job as a new entry, atomically, unless another consumer holds the entry now (it was reclaimed: handing it
     * back would acknowledge that worker's run and add a second one).
     *
     * @param consumer the consumer that must still own the entry ({@code ""}: any)
     * @return false when this consumer no longer held the entry (nothing was added)
     */
    public boolean handBack(ClaimedJob claimed, String consumer) {
        List<String> args = new ArrayList<>(List.of(KageKeys.WORKER_GROUP, claimed.entryId(), consumer));
        Map<String, String> fields = new java.util.LinkedHashMap<>(claimed.fields());
        long since = claimed.queuedSinceMillis();
        if (since > 0) {
            fields.put(QUEUED_SINCE, Long.toString(since));
        }
        fields.forEach((name, value) -> {
            args.add(name);
            args.add(value);
        });
        String id = HANDBACK.run(redis, ScriptOutputType.VALUE, new String[] {claimed.stream()}, args.toArray(String[]::new));
        return id != null;
    }

    /**
     * Resets the idle time of an entry {@code consumer} still owns, without counting a delivery.
     */
    public Ownership refresh(ClaimedJob claimed, String consumer) {
        Long owned = REFRESH.run(redis, ScriptOutputType.INTEGER, new String[] {claimed.stream()}, KageKeys.WORKER_GROUP,
                consumer, claimed.entryId());
        if (owned == null || owned == 0) {
            return Ownership.GONE;
        }
        return owned == 1 ? Ownership.OWNED : Ownership.TAKEN;
    }

    /**
     * How long a worker's heartbeat ({@code kage:worker:<id>}) lives after its last beat. A worker runs its agents on
     * only while its heartbeat reaches Redis, and each agent only while a beat finds its entry still the worker's, both
     * within a lease of this less one beat period and the time a stopped agent has to exit (the worker's
     * {@code WorkerRuntime.LEASE}): this long after the last such beat, the agent has exited.
     */
    public static final Duration HEARTBEAT_TTL = Duration.ofSeconds(25);

    /**
     * How long after Redis turned out to be a new server process the jobs it lost are enqueued again: the heartbeat's
     * TTL. By then each worker that ran one has either beaten into the new Redis, found its entry pending nowhere and
     * stopped it, or gone a whole lease without a beat that found the entry its own and stopped it by that lease;
     * either way the first run has exited before the second can start. Not merely a few beat periods: a beat that reaches the new Redis late (a
     * command that waits out its timeout across the restart, a loaded host) must not let the two runs overlap.
     */
    public static final Duration LOST_ENTRY_GRACE = HEARTBEAT_TTL;

    /** What {@link #refresh} found. */
    public enum Ownership {
        /** Still this consumer's; its idle time is reset. */
        OWNED,
        /** Another consumer holds it now: it was reclaimed. */
        TAKEN,
        /** Pending nowhere: acknowledged already, or lost with a Redis that kept no data. */
        GONE
    }

    /** Pending entries of the agent idle for at least {@code idle}, oldest first, at most {@code count} per priority. */
    public List<PendingEntry> stale(String agent, Duration idle, int count) {
        return stale(agent, idle, count, 0, entry -> false).entries();
    }

    /**
     * Stale entries of the agent a reclaimer may take.
     *
     * @param entries   oldest first per priority, at most the {@code count} asked for per priority
     * @param truncated whether a stream may hold more of them than were returned
     */
    public record Stale(List<PendingEntry> entries, boolean truncated) {
    }

    /**
     * Pending entries of the agent idle for at least {@code idle}, oldest first, at most {@code count} per priority,
     * passing over those {@code passOver} names (entries their live owners still work on). Reads each stream's pending
     * entries a page of {@code count} at a time, up to {@code scanAtMost} of them: a first page of passed-over entries
     * (finished jobs whose outcomes wait for a slow Postgres are idle, and their owners' still) must not hide a dead
     * worker's entries behind it.
     *
     * @param scanAtMost pending entries read per stream at most, 0 for one page
     */
    public Stale stale(String agent, Duration idle, int count, int scanAtMost, java.util.function.Predicate<PendingEntry> passOver) {
        List<PendingEntry> stale = new ArrayList<>();
        boolean truncated = false;
        for (Priority priority : Priority.values()) {
            String stream = keys.jobStream(agent, priority);
            String from = "-";
            int scanned = 0;
            int found = 0;
            while (true) {
                List<PendingMessage> page = redis.xpending(stream, XPendingArgs.Builder
                        .xpending(KageKeys.WORKER_GROUP, Range.create(from, "+"), Limit.from(count)).idle(idle));
                for (PendingMessage message : page) {
                    PendingEntry entry = new PendingEntry(stream, message.getId(), message.getConsumer(),
                            message.getMsSinceLastDelivery(), message.getRedeliveryCount());
                    if (!passOver.test(entry) && found < count) {
                        stale.add(entry);
                        found++;
                    }
                }
                scanned += page.size();
                if (page.size() < count) {
                    break; // the stream's last page
                }
                if (found >= count || scanned >= scanAtMost) {
                    truncated = true;
                    break;
                }
                from = nextId(page.getLast().getId());
            }
        }
        return new Stale(stale, truncated);
    }

    /** The smallest stream id after {@code id} ({@code ms-seq}, both unsigned 64-bit): where the next page starts. */
    static String nextId(String id) {
        int dash = id.indexOf('-');
        long ms = Long.parseUnsignedLong(id.substring(0, dash));
        long seq = Long.parseUnsignedLong(id.substring(dash + 1));
        return seq == -1L ? Long.toUnsignedString(ms + 1) + "-0" : Long.toUnsignedString(ms) + "-" + Long.toUnsignedString(seq + 1);
    }

    /**
     * Takes over one entry, counting a delivery, if it is still idle for at least {@code minIdle}:
     * two reclaimers racing for one entry cannot both win, since the first resets its idle time.
     *
     * @return the claimed job, or empty when someone else took it or it no longer exists
     */
    public Optional<ClaimedJob> claim(String stream, String consumer, Duration minIdle, String entryId) {
        List<StreamMessage<String, String>> claimed = redis.xclaim(stream, Consumer.from(KageKeys.WORKER_GROUP, consumer),
                XClaimArgs.Builder.minIdleTime(minIdle), entryId);
        return claimed.stream()
                .filter(m -> m.getBody() != null && !m.getBody().isEmpty())
                .findFirst()
                .map(m -> new ClaimedJob(stream, m.getId(), m.getBody(), true));
    }

    /**
     * Moves an entry to the dead-letter stream with the reason, then acknowledges it. The copy keeps
     * every original field, so it can be replayed. The stream then keeps its newest {@code keepAtMost} letters (exact
     * trimming), as Sidekiq's dead set does: a poison storm cannot fill Redis, and the listing reads them all.
     *
     * @param keepAtMost {@code KAGE_DEAD_LETTER_MAX}
     * @return the dead letter's id
     */
    public String deadLetter(ClaimedJob job, String reason, int keepAtMost) {
        Map<String, String> fields = new HashMap<>(job.fields() == null ? Map.of() : job.fields());
        fields.put("dead_reason", reason);
        fields.put("dead_from_stream", job.stream());
        fields.put("dead_from_id", job.entryId());
        String id = redis.xadd(keys.deadLetters(), fields);
        redis.xack(job.stream(), KageKeys.WORKER_GROUP, job.entryId());
        try {
            long dropped = redis.xtrim(keys.deadLetters(), XTrimArgs.Builder.maxlen(keepAtMost));
            droppedOverCap.addAndGet(dropped);
            long last = lastCapWarning.get();
            if (dropped > 0 && System.nanoTime() - last > CAP_WARNING_EVERY.toNanos() && lastCapWarning.compareAndSet(last, System.nanoTime())) {
                // At the cap every new letter drops one: a line a minute, not one per poison job.
                LOG.warn("Dropped the {} oldest dead letter(s) since the last such line: more than KAGE_DEAD_LETTER_MAX={} "
                        + "(their jobs stay failed, with their error rows; they can no longer be replayed)",
                        droppedOverCap.getAndSet(0), keepAtMost);
            }
        } catch (RedisException e) {
            // The letter is written and its entry acknowledged: that is what counts. The next letter trims again.
            LOG.warn("Trimming the dead letters to KAGE_DEAD_LETTER_MAX failed: {}", e.getMessage());
        }
        return id;
    }

    /**
     * Drops dead letters older than {@code maxAge} ({@code KAGE_DEAD_LETTER_DAYS}), by Redis's clock (their ids are
     * its time at the move).
     *
     * @return letters dropped
     */
    public long dropDeadLettersOlderThan(Duration maxAge) {
        long cutoff = serverMillis() - maxAge.toMillis();
        if (cutoff <= 0) {
            return 0;
        }
        long dropped = redis.xtrim(keys.deadLetters(), XTrimArgs.Builder.minId(cutoff + "-0"));
        if (dropped > 0) {
            LOG.info("Dropped {} dead letter(s) older than {} days (KAGE_DEAD_LETTER_DAYS); their jobs stay failed, with their "
                    + "error rows", dropped, maxAge.toDays());
        }
        return dropped;
    }

    /**
     * The newest dead letters of {@code tenant}, newest first: the stream read backwards a page at a time until
     * {@code count} are found, so another tenant's many newer letters cannot hide them. Reads at most
     * {@code scanAtMost} letters (of any tenant).
     *
     * @param agent only letters of this agent's jobs; null for every agent
     */
    public List<DeadLetter> deadLetters(String tenant, String agent, int count, int scanAtMost) {
        return deadLetters(tenant, agent, count, scanAtMost, letter -> true);
    }

    /** As {@link #deadLetters(String, String, int, int)}, counting only the letters {@code keep} accepts. */
    public List<DeadLetter> deadLetters(String tenant, String agent, int count, int scanAtMost,
                                        java.util.function.Predicate<DeadLetter> keep) {
        List<DeadLetter> found = new ArrayList<>();
        Range.Boundary<String> upper = Range.Boundary.unbounded();
        int scanned = 0;
        while (found.size() < count && scanned < scanAtMost) {
            int page = Math.min(500, scanAtMost - scanned);
            List<StreamMessage<String, String>> messages = redis.xrevrange(keys.deadLetters(),
                    Range.from(Range.Boundary.unbounded(), upper), Limit.from(page));
            for (StreamMessage<String, String> m : messages) {
                if (tenant.equals(m.getBody().get("tenant")) && (agent == null || agent.equals(m.getBody().get("agent")))
                        && found.size() < count) {
                    DeadLetter letter = new DeadLetter(m.getId(), m.getBody());
                    if (keep.test(letter)) {
                        found.add(letter);
                    }
                }
            }
            scanned += messages.size();
            if (messages.size() < page) {
                break;
            }
            upper = Range.Boundary.excluding(messages.getLast().getId());
        }
        return found;
    }

    /**
     * Whether the dead letters hold one made of {@code job}'s entry (its {@code dead_from_stream} and {@code dead_from_id}),
     * looking at the newest {@code scanAtMost}. For the rare repair of a letter that was never written.
     */
    public boolean hasDeadLetter(ClaimedJob job, String tenant, String agent, int scanAtMost) {
        return !deadLetters(tenant, agent, 1, scanAtMost, letter -> job.entryId().equals(letter.fields().get("dead_from_id"))
                && job.stream().equals(letter.fields().get("dead_from_stream"))).isEmpty();
    }

    /**
     * Removes a dead letter without replaying it. A letter of a job takes the mark a replay takes first (replay.lua),
     * so a discard and a replay of one letter at once cannot both happen: one finds the other's mark.
     *
     * @return whether it was there, and not replayed meanwhile
     */
    public boolean discardDeadLetter(DeadLetter letter) {
        return discardDeadLetter(letter, false);
    }

    /**
     * {@link #discardDeadLetter(DeadLetter)}, also taking over a replay begun and never finished ({@code replaying})
     * when {@code overReplay}: for a letter whose task was cancelled since, whose job can no longer run.
     */
    public boolean discardDeadLetter(DeadLetter letter, boolean overReplay) {
        String agent = letter.fields().get("agent");
        if (agent == null) {
            return redis.xdel(keys.deadLetters(), letter.id()) == 1;
        }
        String mark = keys.replayed(agent, letter.id());
        if (overReplay) {
            redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], 'discarded', 'PX', ARGV[2]) "
                    + "return 1 end return 0", ScriptOutputType.INTEGER, new String[] {mark}, REPLAYING,
                    Long.toString(ENQUEUE_MARKER_TTL.toMillis()));
        }
        boolean taken = redis.set(mark, "discarded", io.lettuce.core.SetArgs.Builder.nx().px(ENQUEUE_MARKER_TTL.toMillis())) != null;
        if (!taken && !"discarded".equals(redis.get(mark))) {
            return false;
        }
        // Taken here, the letter is this discard's even if a replay that found the mark removed it first; taken by an
        // earlier discard whose removal failed, this one finishes it.
        long removed = redis.xdel(keys.deadLetters(), letter.id());
        return taken || removed == 1;
    }

    /**
     * Takes the letter's mark for a replay about to reopen its task ({@code replaying}), before anything changes in
     * Postgres: a letter discarded or replayed already is not reopened, and one being replayed cannot be discarded
     * meanwhile. A mark {@code replaying} left by a replay that failed half-way is taken over (that replay is finished).
     *
     * @return whether this replay may go on
     */
    public boolean beginReplay(DeadLetter letter) {
        String agent = letter.fields().get("agent");
        if (redis.exists(keys.replayedBefore(letter.id())) > 0) {
            redis.xdel(keys.deadLetters(), letter.id());
            return false;
        }
        String mark = keys.replayed(agent, letter.id());
        if (redis.set(mark, REPLAYING, io.lettuce.core.SetArgs.Builder.nx().px(ENQUEUE_MARKER_TTL.toMillis())) != null) {
            return true;
        }
        String found = redis.get(mark);
        if ("1".equals(found)) {
            // Replayed before by a replay that died (or timed out) before it removed the letter: this one removes it.
            redis.xdel(keys.deadLetters(), letter.id());
        }
        return REPLAYING.equals(found);
    }

    /** Gives a begun replay up (its task could not be reopened): the letter can be replayed or discarded again. */
    public void abandonReplay(DeadLetter letter) {
        redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                ScriptOutputType.INTEGER, new String[] {keys.replayed(letter.fields().get("agent"), letter.id())}, REPLAYING);
    }

    /** Ends a begun replay whose attempt ran already (a stale letter): marked replayed, and removed. */
    public void finishStaleReplay(DeadLetter letter) {
        redis.set(keys.replayed(letter.fields().get("agent"), letter.id()), "1",
                io.lettuce.core.SetArgs.Builder.px(ENQUEUE_MARKER_TTL.toMillis()));
        redis.xdel(keys.deadLetters(), letter.id());
    }

    /** The mark of a letter whose replay was begun and not finished ({@link #beginReplay}). */
    static final String REPLAYING = "replaying";

    public Optional<DeadLetter> deadLetter(String id) {
        return redis.xrange(keys.deadLetters(), Range.create(id, id)).stream().findFirst()
                .map(m -> new DeadLetter(m.getId(), m.getBody()));
    }

    /**
     * Puts a dead letter back on its stream as a new attempt, once however often this is called (also at once), and
     * removes it from the dead letters. Marking the letter replayed and adding the attempt are one script
     * (replay.lua): a replay that failed did nothing and can be made again, and one that succeeded is never made
     * twice, even after its job ran and its enqueue-once marker went.
     *
     * @return the job as enqueued (also when its attempt was in the stream already, added by a replay that died before
     *         marking the letter), or empty when this letter was already replayed
     */
    public Optional<JobMessage> replay(DeadLetter letter, int nextAttempt) {
        JobMessage job = letter.job().withAttempt(nextAttempt);
        if (redis.exists(keys.replayedBefore(letter.id())) > 0) {
            redis.xdel(keys.deadLetters(), letter.id());
            return Optional.empty();
        }
        String added = REPLAY.run(redis, ScriptOutputType.VALUE, new String[] {keys.replayed(job.agent(), letter.id()),
                keys.jobStream(job.agent(), job.priority()), keys.enqueued(job.agent(), job.jobId(), job.attempt())},
                flatten(Long.toString(ENQUEUE_MARKER_TTL.toMillis()), job.toFields()));
        // Replayed now or before: the letter goes (a replay that died before this line left it listed).
        redis.xdel(keys.deadLetters(), letter.id());
        return added == null ? Optional.empty() : Optional.of(job);
    }

    /** Consumer names in the agent's group on {@code stream}. */
    public List<String> consumers(String stream) {
        return redis.xinfoConsumers(stream, KageKeys.WORKER_GROUP).stream()
                .map(info -> String.valueOf(asMap(info).get("name")))
                .toList();
    }

    /** Removes a consumer name only when it holds no pending entry (dropping them would lose jobs). */
    public boolean removeConsumerIfIdle(String stream, String consumer) {
        Long removed = DELCONSUMER.run(redis, ScriptOutputType.INTEGER, new String[] {stream}, KageKeys.WORKER_GROUP, consumer);
        return removed != null && removed == 1;
    }

    /**
     * Trims the agent's streams, removing only entries that are delivered and acknowledged, and
     * keeping the newest {@code keepAcked} entries for inspection.
     *
     * @return entries removed
     */
    public long trim(String agent, long keepAcked) {
        long removed = 0;
        for (Priority priority : Priority.values()) {
            String stream = keys.jobStream(agent, priority);
            String lastDelivered = lastDeliveredId(stream);
            if (lastDelivered == null || lastDelivered.equals("0-0")) {
                continue;
            }
            String threshold = lastDelivered;
            PendingMessages summary = redis.xpending(stream, KageKeys.WORKER_GROUP);
            if (summary.getCount() > 0 && summary.getMessageIds().getLower().getValue() != null) {
                threshold = min(threshold, summary.getMessageIds().getLower().getValue());
            }
            // The keepAcked-th newest entry bounds the trim too. Read from whichever end is nearer (its entries travel
            // whole, descriptions and all): in steady state that is the few added since the last trim, from the oldest.
            long length = redis.xlen(stream);
            if (length <= keepAcked) {
                continue;
            }
            long fromOldest = length - keepAcked + 1;
            String kept;
            if (fromOldest < keepAcked) {
                // Entries added meanwhile only make this id older than the keepAcked-th newest: more are kept, never fewer.
                List<StreamMessage<String, String>> oldest = redis.xrange(stream, Range.create("-", "+"), Limit.from(fromOldest));
                if (oldest.size() < fromOldest) {
                    continue; // trimmed meanwhile
                }
                // (Another worker's trim between the XLEN and this read moves the boundary: a few more of the kept,
                // acknowledged entries can go. Pending and undelivered ones cannot: the threshold stays below them.)
                kept = oldest.getLast().getId();
            } else {
                List<StreamMessage<String, String>> newest = redis.xrevrange(stream, Range.create("-", "+"), Limit.from(keepAcked));
                if (newest.size() < keepAcked) {
                    continue;
                }
                kept = newest.getLast().getId();
            }
            threshold = min(threshold, kept);
            removed += redis.xtrim(stream, XTrimArgs.Builder.minId(threshold));
        }
        return removed;
    }

    private String lastDeliveredId(String stream) {
        for (Object group : redis.xinfoGroups(stream)) {
            Map<String, Object> info = asMap(group);
            if (KageKeys.WORKER_GROUP.equals(String.valueOf(info.get("name")))) {
                return String.valueOf(info.get("last-delivered-id"));
            }
        }
        return null;
    }

    /** The smaller of two stream ids. */
    static String min(String a, String b) {
        return compareIds(a, b) <= 0 ? a : b;
    }

    static int compareIds(String a, String b) {
        String[] x = a.split("-");
        String[] y = b.split("-");
        int byTime = Long.compare(Long.parseLong(x[0]), Long.parseLong(y[0]));
        return byTime != 0 ? byTime : Long.compare(Long.parseLong(x[1]), Long.parseLong(y[1]));
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asMap(Object replyList) {
        Map<String, Object> map = new HashMap<>();
        List<Object> list = (List<Object>) replyList;
        for (int i = 0; i + 1 < list.size(); i += 2) {
            map.put(String.valueOf(list.get(i)), list.get(i + 1));
        }
        return map;
    }

    private static String delayedMember(JobMessage job) {
        Map<String, String> fields = new HashMap<>(job.toFields());
        // Two schedulings of one job attempt stay two members of the set.
        fields.put("delay_id", UUID.randomUUID().toString());
        try {
            return JSON.writeValueAsString(fields);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String[] flatten(String first, Map<String, String> fields) {
        List<String> args = new ArrayList<>();
        args.add(first);
        fields.forEach((k, v) -> {
            args.add(k);
            args.add(v);
        });
        return args.toArray(String[]::new);
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
     * @param redelivered taken over from another consumer: its attempt may already have an outcome
     * @param claimedAtNanos {@link System#nanoTime()} when this process got it, to measure claim-to-start latency
     */
    public record ClaimedJob(String stream, String entryId, Map<String, String> fields, boolean redelivered,
                             long claimedAtNanos) {

        /** An entry claimed now. */
        public ClaimedJob(String stream, String entryId, Map<String, String> fields, boolean redelivered) {
            this(stream, entryId, fields, redelivered, System.nanoTime());
        }

        /** An entry read for the first time ({@code XREADGROUP >}), now. */
        public ClaimedJob(String stream, String entryId, Map<String, String> fields) {
            this(stream, entryId, fields, false);
        }

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

        /** This entry as one delivered before: its attempt may already have an outcome, looked for before it runs. */
        public ClaimedJob deliveredBefore() {
            return redelivered ? this : new ClaimedJob(stream, entryId, fields, true, claimedAtNanos);
        }

        /** {@code stream/entryId}, how a worker names its in-flight entries in its heartbeat. */
        public String key() {
            return stream + "/" + entryId;
        }

        /**
         * When the job first entered its stream (the Redis clock's ms): a handed-back entry carries the time of the entry
         * it replaced ({@value #QUEUED_SINCE}), else it is this entry's id. 0 when neither says.
         */
        public long queuedSinceMillis() {
            String since = fields == null ? null : fields.get(QUEUED_SINCE);
            try {
                return Long.parseLong(since != null ? since : entryId.substring(0, entryId.indexOf('-')));
            } catch (RuntimeException notAnId) {
                return 0;
            }
        }
    }

    /** The field a handed-back entry keeps its job's first queueing time in (ms): how long a job waited survives it. */
    public static final String QUEUED_SINCE = "queued_since";

    /**
     * A pending entry as {@code XPENDING} reports it.
     *
     * @param idleMs     milliseconds since it was last delivered or refreshed
     * @param deliveries how often it was delivered (refreshes do not count)
     */
    /**
     * One stream's state.
     *
     * @param length    entries in the stream (acknowledged ones until they are trimmed)
     * @param waiting   entries not yet delivered to any worker (-1 on a Redis before 7.0, which does not say)
     * @param pending   entries delivered and not yet acknowledged (running, or left by a dead worker)
     * @param consumers consumer names in the group
     * @param oldestAgeMs age (Redis clock) of the oldest entry waiting or pending, 0 when none
     */
    public record Depth(String agent, Priority priority, String stream, long length, long waiting, long pending, long consumers,
                        long oldestAgeMs) {
    }

    public record PendingEntry(String stream, String entryId, String consumer, long idleMs, long deliveries) {
        public String key() {
            return stream + "/" + entryId;
        }
    }

    /**
     * An entry of the dead-letter stream.
     *
     * @param fields the job's fields plus {@code dead_reason}, {@code dead_from_stream}, {@code dead_from_id}
     */
    public record DeadLetter(String id, Map<String, String> fields) {
        /** @throws IllegalArgumentException naming the field when the letter is not a job ({@link #notAJob}) */
        public JobMessage job() {
            return JobMessage.fromFields(fields);
        }

        /**
         * Why this letter cannot be replayed: an entry that was not a job (a poison entry written by hand, or by an
         * incompatible producer) is kept as it was, and can only be discarded.
         *
         * @return what is wrong with it, or empty for a letter of a job
         */
        public Optional<String> notAJob() {
            JobMessage job;
            try {
                job = JobMessage.fromFields(fields);
            } catch (IllegalArgumentException e) {
                return Optional.of(e.getMessage());
            }
            try {
                UUID.fromString(job.taskId());
                return Optional.empty();
            } catch (IllegalArgumentException e) {
                return Optional.of("job field 'task_id' is not a task's id");
            }
        }

        public String reason() {
            return fields.getOrDefault("dead_reason", "");
        }
    }

    /** A stream entry that cannot be read as a job; retrying never helps. */
    public static final class MalformedJobException extends KageException {
        public MalformedJobException(String message) {
            super(message, false);
        }
    }
}
