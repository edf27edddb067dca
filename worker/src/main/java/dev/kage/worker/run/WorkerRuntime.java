package dev.kage.worker.run;

import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.redis.KageKeys;
import dev.kage.worker.WorkerSettings;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A worker's moving parts: one claim loop per served agent (each with its own Redis connection for
 * blocking reads), {@code MAX_PARALLEL_CLIS} slots shared by all agents, jobs on virtual threads, and
 * a heartbeat ({@code kage:worker:<id>}, refreshed every {@link #HEARTBEAT_EVERY}, expiring after
 * {@link #HEARTBEAT_TTL}). Thread-safe; {@link #start()} once, {@link #stop()} once.
 */
public final class WorkerRuntime {
    private static final Logger LOG = LoggerFactory.getLogger(WorkerRuntime.class);

    public static final Duration BLOCK = Duration.ofSeconds(2);
    public static final Duration HEARTBEAT_EVERY = Duration.ofSeconds(5);
    public static final Duration HEARTBEAT_TTL = Duration.ofSeconds(20);
    /** Pause after Redis refused a read, so an outage is not a hot loop. */
    static final Duration OUTAGE_PAUSE = Duration.ofSeconds(1);

    private final WorkerSettings worker;
    private final int slotCount;
    private final KageKeys keys;
    private final RedisClient redisClient;
    private final RedisCommands<String, String> redis;
    private final JobQueue queue;
    private final JobRunner runner;
    private final Clock clock;
    private final Semaphore slots;
    private final Set<String> inFlight = ConcurrentHashMap.newKeySet();
    private final ExecutorService jobs = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("kage-job-", 0).factory());
    private final ScheduledExecutorService heartbeat = Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kage-heartbeat").factory());
    private final List<Thread> loops = new ArrayList<>();
    private final List<StatefulRedisConnection<String, String>> connections = new ArrayList<>();
    private volatile boolean running;

    public WorkerRuntime(WorkerSettings worker, int slotCount, KageKeys keys, RedisClient redisClient,
                         RedisCommands<String, String> redis, JobQueue queue, JobRunner runner, Clock clock) {
        this.worker = worker;
        this.slotCount = slotCount;
        this.keys = keys;
        this.redisClient = redisClient;
        this.redis = redis;
        this.queue = queue;
        this.runner = runner;
        this.clock = clock;
        this.slots = new Semaphore(slotCount);
    }

    public synchronized void start() {
        if (running) {
            return;
        }
        running = true;
        for (String agent : worker.agents()) {
            queue.ensureStreams(agent);
        }
        beat();
        heartbeat.scheduleAtFixedRate(this::beat, HEARTBEAT_EVERY.toMillis(), HEARTBEAT_EVERY.toMillis(), TimeUnit.MILLISECONDS);
        for (String agent : worker.agents()) {
            StatefulRedisConnection<String, String> connection = redisClient.connect();
            connections.add(connection);
            Thread loop = Thread.ofPlatform().name("kage-claim-" + agent).start(() -> claimLoop(agent, connection.sync()));
            loops.add(loop);
        }
        LOG.info("Worker {} serving {} with {} slots (work dir {})", worker.workerId(), worker.agents(), slotCount,
                worker.workDir());
    }

    /**
     * Stops claiming, lets running jobs finish within the grace period, then interrupts the rest (their
     * process trees are killed; their entries stay pending for another worker).
     */
    public synchronized void stop() {
        if (!running) {
            return;
        }
        running = false;
        loops.forEach(Thread::interrupt);
        for (Thread loop : loops) {
            try {
                loop.join(BLOCK.multipliedBy(2).toMillis());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        jobs.shutdown();
        try {
            if (!jobs.awaitTermination(worker.shutdownGrace().toMillis(), TimeUnit.MILLISECONDS)) {
                LOG.warn("Grace period of {}s over; stopping {} running job(s): {}", worker.shutdownGrace().toSeconds(),
                        inFlight.size(), inFlight);
                jobs.shutdownNow();
                jobs.awaitTermination(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            jobs.shutdownNow();
            Thread.currentThread().interrupt();
        }
        heartbeat.shutdownNow();
        try {
            redis.del(keys.worker(worker.workerId()));
        } catch (RedisException e) {
            LOG.warn("Could not remove heartbeat {}: {}", keys.worker(worker.workerId()), e.getMessage());
        }
        connections.forEach(StatefulRedisConnection::close);
        LOG.info("Worker {} stopped", worker.workerId());
    }

    /** Jobs running now, by job id. */
    public Set<String> inFlight() {
        return Set.copyOf(inFlight);
    }

    private void claimLoop(String agent, RedisCommands<String, String> blocking) {
        boolean outage = false;
        while (running) {
            try {
                slots.acquire();
            } catch (InterruptedException e) {
                return;
            }
            List<ClaimedJob> claimed;
            try {
                claimed = queue.read(blocking, agent, worker.workerId(), BLOCK);
                if (outage) {
                    LOG.info("Redis is back; {} resumes claiming", agent);
                    outage = false;
                }
            } catch (RedisException e) {
                slots.release();
                if (!running) {
                    return;
                }
                if (!outage) {
                    LOG.error("Cannot read jobs for {} from Redis ({}); retrying every {}s", agent, e.getMessage(),
                            OUTAGE_PAUSE.toSeconds());
                    outage = true;
                }
                if (!pause(OUTAGE_PAUSE)) {
                    return;
                }
                continue;
            }
            if (claimed.isEmpty()) {
                slots.release();
                continue;
            }
            for (int i = 0; i < claimed.size(); i++) {
                if (i > 0) {
                    // A blocking read can hand over one entry per priority; each needs its own slot.
                    slots.acquireUninterruptibly();
                }
                submit(claimed.get(i));
            }
        }
    }

    private void submit(ClaimedJob job) {
        String id = job.stream() + "/" + job.entryId();
        inFlight.add(id);
        jobs.execute(() -> {
            try {
                runner.run(job);
            } catch (InterruptedException e) {
                LOG.info("Job {} stopped by shutdown; left pending for another worker", id);
            } catch (RuntimeException e) {
                // The entry is not acknowledged: it stays pending and is retried (or dead-lettered) elsewhere.
                LOG.error("Job {} failed before its outcome was recorded; left pending: {}", id, e.toString(), e);
            } finally {
                inFlight.remove(id);
                slots.release();
            }
        });
    }

    private void beat() {
        try {
            String key = keys.worker(worker.workerId());
            redis.hset(key, Map.of(
                    "agents", String.join(",", worker.agents()),
                    "slots", Integer.toString(slotCount),
                    "busy", Integer.toString(slotCount - slots.availablePermits()),
                    "in_flight", String.join(",", inFlight),
                    "heartbeat_at", clock.instant().toString(),
                    "pid", Long.toString(ProcessHandle.current().pid())));
            redis.pexpire(key, HEARTBEAT_TTL.toMillis());
        } catch (RedisException e) {
            LOG.warn("Heartbeat failed: {}", e.getMessage());
        }
    }

    /** Waits, returning false when interrupted. */
    private static boolean pause(Duration duration) {
        try {
            // A fixed pause after a failed read keeps an outage from becoming a hot loop.
            Thread.sleep(duration);
            return true;
        } catch (InterruptedException e) {
            return false;
        }
    }
}
