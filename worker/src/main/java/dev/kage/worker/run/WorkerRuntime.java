package dev.kage.worker.run;

import dev.kage.config.QueueSettings;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.queue.JobQueue.PendingEntry;
import dev.kage.redis.KageKeys;
import dev.kage.redis.Utf8Codec;
import dev.kage.task.LiveTaskState;
import dev.kage.task.Priority;
import dev.kage.worker.WorkerSettings;
import dev.kage.worker.metrics.WorkerMetrics;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisException;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A worker's moving parts. Thread-safe; {@link #start()} once, {@link #stop()} once.
 * <ul>
 *   <li>one claim loop per served agent, each with its own Redis connection for blocking reads, all
 *       sharing {@code MAX_PARALLEL_CLIS} slots; jobs run on virtual threads;</li>
 *   <li>a heartbeat ({@code kage:worker:<id>}, every {@link #HEARTBEAT_EVERY}, expiring after
 *       {@link JobQueue#HEARTBEAT_TTL}) that lists the in-flight entries and refreshes each one's idle time,
 *       so a long job on a live worker is never reclaimed; an entry found taken by another worker is
 *       stopped here;</li>
 *   <li>a lease: when no heartbeat has reached Redis for {@link #LEASE} (the heartbeat's TTL less one period and a
 *       stopped agent's kill grace), the worker stops its running agents and claims nothing, since once its heartbeat
 *       lapses another worker may reclaim their entries (a worker cut off from Redis while another is not would
 *       otherwise run the job beside it);</li>
 *   <li>a reclaimer that takes over entries idle past {@code KAGE_RECLAIM_IDLE_SECONDS} whose worker's
 *       heartbeat lapsed or that their worker no longer tracks, and sends entries delivered
 *       {@code KAGE_MAX_DELIVERIES} times without finishing to the dead letters;</li>
 *   <li>housekeeping: due delayed jobs moved to their streams, cancelled tasks' jobs stopped, outcomes
 *       kept during a Postgres outage written, streams trimmed, dead consumer names removed.</li>
 * </ul>
 */
public final class WorkerRuntime {
    private static final Logger LOG = LoggerFactory.getLogger(WorkerRuntime.class);

    public static final Duration BLOCK = Duration.ofSeconds(2);
    public static final Duration HEARTBEAT_EVERY = Duration.ofSeconds(5);
    /**
     * How long a worker runs its agents on without a heartbeat that reached Redis, and each agent on without a beat that
     * found its entry still this worker's: short of the heartbeat's TTL, after which other workers may reclaim its
     * entries (and a coordinator enqueues again the jobs a restarted Redis lost, {@link JobQueue#LOST_ENTRY_GRACE}), by
     * one period and by the time a stopped agent has to exit before it is killed
     * ({@link dev.kage.worker.process.ProcessRunner#KILL_GRACE}). Checked every second on a thread of its own; no job
     * is claimed or reclaimed while the worker's own lease is out.
     */
    public static final Duration LEASE = JobQueue.HEARTBEAT_TTL.minus(HEARTBEAT_EVERY).minus(dev.kage.worker.process.ProcessRunner.KILL_GRACE);
    private static final dev.kage.redis.LuaScript HEARTBEAT = dev.kage.redis.LuaScript.load(WorkerRuntime.class, "heartbeat.lua");
    /** How long one reclaim pass waits, at most, for slots to free for the stale entries it found. */
    static final Duration RECLAIM_SLOT_WAIT = Duration.ofSeconds(3);
    /** How many stale entries one pass reads per stream (oldest first). */
    static final int RECLAIM_WINDOW = 50;
    /**
     * Pending entries a reclaim pass reads per stream at most, past those it passes over (their live owners still work
     * on them), looking for a window of stale ones.
     */
    static final int RECLAIM_SCAN = 5_000;
    /** How often a claim loop looks again whether the reclaimer still waits for slots for stale entries. */
    static final Duration STALE_FIRST_PAUSE = Duration.ofMillis(100);
    static final Duration CANCEL_CHECK_EVERY = Duration.ofSeconds(1);
    static final Duration TRIM_EVERY = Duration.ofSeconds(60);
    /** How often a claim loop moves due delayed jobs to the streams, at most. */
    static final Duration PROMOTE_EVERY = Duration.ofMillis(250);
    /**
     * Jobs whose agent is done and that wait for their outcome's group commit and acknowledgement, at most, beyond
     * the slots. They hold no slot (a slot is a running agent), so the next jobs start meanwhile. Two outcome batches'
     * worth: one being written, one gathering.
     */
    static final int FINISHING_ROOM = 2 * OutcomeRecorder.MAX_BATCH;
    /** Pause after Redis refused a read, so an outage is not a hot loop. */
    static final Duration OUTAGE_PAUSE = Duration.ofSeconds(1);

    private final WorkerSettings worker;
    private final QueueSettings queueSettings;
    private final int slotCount;
    private final KageKeys keys;
    private final RedisClient redisClient;
    private final RedisCommands<String, String> redis;
    private final JobQueue queue;
    private final JobRunner runner;
    private final LiveTaskState live;
    private final OutcomeRecorder outcomes;
    private final Clock clock;
    private final WorkerMetrics metrics;
    private final Semaphore slots;
    /**
     * Room for a job's whole life, running and then finishing: the slots plus {@link #FINISHING_ROOM}. A job takes its
     * room before it starts, so once started it never waits for one; when finished jobs fill the room (Postgres slower
     * than the agents), claimed jobs wait for it before they start, and the claim loops stop with them.
     */
    private final Semaphore room;
    /**
     * Start lanes: how many jobs that start a process may be between their claim and their agent's start at once
     * ({@code KAGE_START_LANES}). Starting (worktree checkout, spawn) is CPU work; a worker that claimed more jobs than
     * it can start at once would make each of them wait on the others, while they could have gone to another worker.
     */
    private final Semaphore startLanes;
    /** The agents whose jobs start a process, and so need a start lane (not noop or HTTP agents). */
    private final java.util.Set<String> lanedAgents;
    private final Map<String, Running> inFlight = new ConcurrentHashMap<>();
    private final ExecutorService jobs = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("kage-job-", 0).factory());
    private final ScheduledExecutorService housekeeping = Executors.newScheduledThreadPool(2,
            Thread.ofPlatform().daemon().name("kage-housekeeping-", 0).factory());
    /**
     * The heartbeat's own thread: housekeeping that waits on Postgres (the outbox's flush, a poison job's outcome) for
     * up to its socket timeout must not hold it past {@link JobQueue#HEARTBEAT_TTL}, or live jobs would be reclaimed and run twice.
     */
    private final ScheduledExecutorService heartbeat = Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kage-heartbeat").factory());
    /**
     * The reclaimer's own thread: while a dead worker's entries wait for slots, its passes follow each other at once,
     * and housekeeping that must run every second (cancels) must not wait behind them.
     */
    private final ScheduledExecutorService reclaimer = Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kage-reclaim").factory());
    /**
     * True while the reclaimer found stale entries (a dead worker's, idle past the reclaim time) it has no slot for yet:
     * the claim loops take no new entries meanwhile, so the slots that free go to the jobs that have waited longest.
     * Read by the claim loops, written by the reclaimer only.
     */
    private volatile boolean staleWaiting;
    /** Reclaim passes so far; the reclaimer's thread only. */
    private long reclaimPasses;
    /** Watches {@link #lastBeat} every second; never waits on Redis or Postgres. */
    private final ScheduledExecutorService leaseWatch = Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kage-lease").factory());
    /** When ({@link System#nanoTime}) the last heartbeat that reached Redis was sent. */
    private volatile long lastBeat = System.nanoTime();
    /** True while the lease is out: running agents were stopped, and jobs claimed meanwhile are stopped too. */
    private volatile boolean leaseLost;
    /** When ({@link System#nanoTime}) {@link #watchLease} last ran, and whether it let a late tick pass; its thread only. */
    private long lastWatch = System.nanoTime();
    private boolean skippedLateTick;
    private final List<Thread> loops = new ArrayList<>();
    /** Dead letters written at once at most, each on a job thread of its own ({@link #deadLetter}). */
    static final int DEAD_LETTER_WRITERS = 2;
    private final Semaphore deadLetterWriters = new Semaphore(DEAD_LETTER_WRITERS);
    /** The claim loops' connections, added by each loop as it connects. */
    private final List<StatefulRedisConnection<String, String>> connections = new java.util.concurrent.CopyOnWriteArrayList<>();
    private volatile boolean running;

    public WorkerRuntime(WorkerSettings worker, QueueSettings queueSettings, int slotCount, KageKeys keys, RedisClient redisClient,
                         RedisCommands<String, String> redis, JobQueue queue, JobRunner runner, LiveTaskState live,
                         OutcomeRecorder outcomes, Clock clock, WorkerMetrics metrics, int startLanes,
                         java.util.Set<String> lanedAgents) {
        this.worker = worker;
        this.queueSettings = queueSettings;
        this.slotCount = slotCount;
        this.keys = keys;
        this.redisClient = redisClient;
        this.redis = redis;
        this.queue = queue;
        this.runner = runner;
        this.live = live;
        this.outcomes = outcomes;
        this.clock = clock;
        this.metrics = metrics;
        metrics.jobsRunning(this::runningJobs);
        // Fair, so a loop that gives its slots back and asks again queues behind the others.
        this.slots = new Semaphore(slotCount, true);
        this.room = new Semaphore(slotCount + FINISHING_ROOM);
        this.startLanes = new Semaphore(startLanes, true);
        this.lanedAgents = java.util.Set.copyOf(lanedAgents);
    }

    public synchronized void start() {
        if (running) {
            return;
        }
        running = true;
        for (String agent : worker.agents()) {
            try {
                queue.ensureStreams(agent);
            } catch (RedisException e) {
                // Redis went away since the start-up check (or answers LOADING): the claim loop creates them once it reads.
                LOG.warn("The streams of {} are not set up yet (Redis: {}); its claim loop sets them up when Redis answers",
                        agent, e.getMessage());
            }
        }
        try {
            dev.kage.redis.EvictionCheck.warning(redis).ifPresent(LOG::warn);
        } catch (RuntimeException e) {
            LOG.debug("Redis's eviction policy not read: {}", e.toString());
        }
        try {
            JobQueue.server(redis);
        } catch (io.lettuce.core.RedisCommandExecutionException e) {
            // Refused (an ACL without INFO), not unreachable: every job would wait out the restart hold, for good.
            throw new IllegalStateException("Redis refuses INFO server (" + e.getMessage() + "): a worker needs it after each "
                    + "read to tell entries a restarted Redis may have delivered before; allow INFO for its user", e);
        } catch (RuntimeException e) {
            LOG.debug("INFO server not read at start: {}", e.toString());
        }
        lastBeat = System.nanoTime();
        lastWatch = lastBeat;
        beat();
        // At a fixed rate: a beat held up (a refresh waiting out its timeout) is followed at once by the next, not a
        // whole period later, so the lease does not run out while Redis answers.
        heartbeat.scheduleAtFixedRate(logged(this::beat), HEARTBEAT_EVERY.toMillis(), HEARTBEAT_EVERY.toMillis(),
                TimeUnit.MILLISECONDS);
        every(leaseWatch, Duration.ofSeconds(1), this::watchLease);
        every(reclaimer, HEARTBEAT_EVERY, this::reclaim);
        every(CANCEL_CHECK_EVERY, this::stopCancelled);
        every(Duration.ofSeconds(2), this::flushOutbox);
        every(TRIM_EVERY, this::tidy);
        for (String agent : worker.agents()) {
            loops.add(Thread.ofPlatform().name("kage-claim-" + agent).start(() -> claimLoop(agent)));
        }
        LOG.info("Worker {} serving {} with {} slots (work dir {})", worker.workerId(), worker.agents(), slotCount,
                worker.workDir());
        runner.publishBudgetDefaults();
    }

    /**
     * Stops claiming, lets running jobs finish within the grace period, then stops the rest, which
     * hand their entries back to the queue so another worker takes them at once.
     */
    public synchronized void stop() {
        if (!running) {
            return;
        }
        running = false;
        // No reclaim pass starts from now on; one under way stops before its next claim.
        reclaimer.shutdown();
        // Not interrupted: a blocking XREADGROUP that was cut short on our side would stay blocked in Redis and
        // could still take an entry (even one handed back below) for this departing consumer. Each loop ends
        // after its read returns, within the block time, handing back what that read brought.
        for (Thread loop : loops) {
            try {
                loop.join(BLOCK.multipliedBy(3).toMillis());
                if (loop.isAlive()) {
                    loop.interrupt();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        jobs.shutdown();
        try {
            if (!jobs.awaitTermination(worker.shutdownGrace().toMillis(), TimeUnit.MILLISECONDS)) {
                // A job whose agent has exited only settles, pushes and records: that must not be cut short.
                List<Running> stoppable = inFlight.values().stream().filter(r -> !r.control().unstoppable()).toList();
                LOG.warn("Grace period of {}s over; handing back {} running job(s)", worker.shutdownGrace().toSeconds(),
                        stoppable.size());
                stoppable.forEach(r -> r.control().stop(JobControl.StopReason.SHUTDOWN));
                if (!jobs.awaitTermination(30, TimeUnit.SECONDS)) {
                    LOG.error("{} job(s) did not stop; their entries stay pending and will be reclaimed", inFlight.size());
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        housekeeping.shutdownNow();
        reclaimer.shutdownNow();
        heartbeat.shutdownNow();
        leaseWatch.shutdownNow();
        try {
            // A beat under way would write the heartbeat again after it is deleted below (and delay reclaims by a TTL).
            heartbeat.awaitTermination(HEARTBEAT_EVERY.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try {
            redis.del(keys.worker(worker.workerId()));
            redis.srem(keys.workers(), worker.workerId());
        } catch (RedisException e) {
            LOG.warn("Could not remove heartbeat {}: {}", keys.worker(worker.workerId()), e.getMessage());
        }
        connections.forEach(StatefulRedisConnection::close);
        LOG.info("Worker {} stopped", worker.workerId());
    }

    /**
     * The claim loop's own connection (a blocking read holds it), made here: a Redis that does not answer when the worker
     * starts delays this agent's claims, it does not stop the worker half started (the heartbeat and the other loops
     * running, this agent advertised and never served). Lettuce reconnects it once made.
     */
    private void claimLoop(String agent) {
        StatefulRedisConnection<String, String> connection = null;
        boolean told = false;
        while (running && connection == null) {
            try {
                connection = redisClient.connect(Utf8Codec.INSTANCE);
            } catch (RedisException e) {
                if (!told) {
                    LOG.error("Cannot connect to Redis for {}'s claims ({}); retrying every {}s", agent, e.getMessage(),
                            OUTAGE_PAUSE.toSeconds());
                    told = true;
                }
                if (!pause(OUTAGE_PAUSE)) {
                    return;
                }
            }
        }
        if (connection == null) {
            return;
        }
        connections.add(connection);
        if (!running) {
            // stop() may have closed the connections already: this one is closed here.
            connection.close();
            return;
        }
        if (told) {
            LOG.info("Connected to Redis; {} starts claiming", agent);
        }
        claimLoop(agent, connection.sync());
    }

    /**
     * Claims jobs of one agent while there are free slots. Slots are held only while reading without
     * blocking: before a blocking read every slot is given back, so another agent's loop and the
     * reclaimer are never starved by a loop waiting on empty streams; an entry that arrives during the
     * blocking read takes a free slot then, or is handed straight back when there is none.
     */
    private void claimLoop(String agent, RedisCommands<String, String> blocking) {
        boolean laned = lanedAgents.contains(agent);
        boolean outage = false;
        long round = 0;
        long nextPromote = 0;
        while (running) {
            if (leaseOut()) {
                // Nothing is claimed while no heartbeat reaches Redis: a job started now would be stopped by the lease.
                if (!pause(Duration.ofSeconds(1))) {
                    return;
                }
                continue;
            }
            if (staleWaiting) {
                // A dead worker's entries wait for the next free slots (the reclaimer's): they have waited longest.
                if (!pause(STALE_FIRST_PAUSE)) {
                    return;
                }
                continue;
            }
            int taken;
            try {
                // Poll for a slot so that a stopping worker's loop ends even while every slot is busy.
                if (!slots.tryAcquire(200, TimeUnit.MILLISECONDS)) {
                    continue;
                }
                taken = 1;
                // Take every other free slot too, so one read can fill them all.
                while (slots.tryAcquire(0, TimeUnit.MILLISECONDS)) {
                    taken++;
                }
                if (laned) {
                    // Claim only what can start now: one job per free start lane (the rest stays in the stream, for
                    // this worker's next read or another worker).
                    if (!startLanes.tryAcquire(200, TimeUnit.MILLISECONDS)) {
                        slots.release(taken);
                        continue;
                    }
                    int lanes = 1;
                    while (lanes < taken && startLanes.tryAcquire()) {
                        lanes++;
                    }
                    slots.release(taken - lanes);
                    taken = lanes;
                }
            } catch (InterruptedException e) {
                return;
            }
            List<ClaimedJob> claimed;
            boolean blocked = false;
            try {
                if (System.nanoTime() - nextPromote >= 0) {
                    queue.promoteDue(agent);
                    nextPromote = System.nanoTime() + PROMOTE_EVERY.toNanos();
                }
                // Only as many jobs as the agent's limit group can grant permits for now: a job claimed beyond that
                // could only wait in its slot or go through the delayed set and back (in a 429 storm, or under a
                // lowered rate, a backlog would cycle through Redis: a hot loop). The rest stay in their streams.
                JobRunner.ClaimGate gate = runner.claimGate(agent, taken);
                if (gate.jobs() < taken) {
                    slots.release(taken - gate.jobs());
                    releaseLanes(laned, taken - gate.jobs());
                    taken = gate.jobs();
                }
                if (taken == 0) {
                    if (!pause(gate.lookAgainIn().compareTo(BLOCK) < 0 ? gate.lookAgainIn() : BLOCK)) {
                        return;
                    }
                    continue;
                }
                claimed = queue.poll(blocking, agent, worker.workerId(), round++, taken);
                if (claimed.isEmpty()) {
                    slots.release(taken);
                    releaseLanes(laned, taken);
                    taken = 0;
                    blocked = true;
                    claimed = queue.await(blocking, agent, worker.workerId(), BLOCK);
                }
                if (outage) {
                    LOG.info("Redis answers again; {} resumes claiming", agent);
                    outage = false;
                }
            } catch (RedisException e) {
                slots.release(taken);
                releaseLanes(laned, taken);
                if (!running) {
                    return;
                }
                if (isNoGroup(e)) {
                    LOG.warn("The streams of {} or their group are gone (Redis restarted without its data?); recreating them", agent);
                    safely(() -> queue.ensureStreams(agent));
                    continue;
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
            if (running && leaseOut() && !claimed.isEmpty()) {
                // The lease ran out during the read: started now, these would only be stopped. Left pending, they are
                // reclaimed (by this worker too, once its beats get through).
                LOG.warn("No heartbeat reaches Redis; {} entr(ies) of {} just read are left pending, not started", claimed.size(),
                        agent);
                if (!blocked) {
                    slots.release(taken);
                    releaseLanes(laned, taken);
                }
                continue;
            }
            Map<String, Long> holds = restartHolds(blocking, agent, claimed);
            if (!running) {
                // Stopping: what this last read brought goes straight back to the queue (what a restarted Redis may have
                // delivered before stays pending: a new entry would run unchecked, perhaps beside its first run).
                claimed.forEach(job -> giveBack(holds.containsKey(job.key()) ? job.deliveredBefore() : job));
                slots.release(taken);
                releaseLanes(laned, taken);
                return;
            }
            if (!blocked && claimed.size() < taken) {
                slots.release(taken - claimed.size());
                releaseLanes(laned, taken - claimed.size());
            }
            // Every job of the read is listed in flight before the first waits for room: one not listed yet would be
            // neither refreshed nor named by the heartbeat while it waited, and a reclaimer (another worker's, or this
            // one's) would take it and run it beside this worker's run once room freed.
            List<Map.Entry<ClaimedJob, JobControl>> tracked = new ArrayList<>(claimed.size());
            for (ClaimedJob read : claimed) {
                ClaimedJob job = holds.containsKey(read.key()) ? read.deliveredBefore() : read;
                Running here = inFlight.get(job.key());
                if (here != null) {
                    // Redis handed out as new an entry this worker runs now: it lost the delivery (restarted from a
                    // snapshot or an AOF that missed it). The run here goes on, and the entry is this worker's again; a
                    // run here already stopping (a beat found the entry pending nowhere) leaves it pending for a reclaim.
                    LOG.warn("Entry {} was delivered again while it runs here (Redis lost its delivery); not run twice{}",
                            job.key(), here.control().reason() == null ? ""
                                    : ": the run here is stopping, and the entry is reclaimed once idle, its outcome checked");
                    if (!blocked) {
                        slots.release();
                        releaseLanes(laned, 1);
                    }
                    continue;
                }
                JobControl control;
                if (!blocked) {
                    control = track(job, laned);
                } else if (slots.tryAcquire()) {
                    if (!laned || startLanes.tryAcquire()) {
                        control = track(job, laned);
                    } else {
                        slots.release();
                        giveBack(job);
                        continue;
                    }
                } else {
                    // No slot for an entry that arrived while blocking: give it back at once rather than hold it
                    // unrefreshed (another worker would reclaim it while it waited here).
                    giveBack(job);
                    continue;
                }
                Long holdUntil = holds.get(job.key());
                if (holdUntil != null && holdUntil != 0) {
                    control.holdUntil(holdUntil);
                }
                tracked.add(Map.entry(job, control));
            }
            for (int i = 0; i < tracked.size(); i++) {
                if (!submit(tracked.get(i).getKey(), tracked.get(i).getValue())) {
                    // Stopping while waiting for room: the jobs not started yet go back to the queue, before the
                    // interrupt is set again (with it set, Lettuce's calls would give up at once and hand back nothing).
                    tracked.subList(i + 1, tracked.size()).forEach(t -> untrack(t.getKey(), t.getValue()));
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    /**
     * The restart hold: entries the Redis that hands them out as new may not be the first to hand out (older than its
     * server process: it restarted from a snapshot or an AOF that missed their delivery), by their keys. Each is run as
     * delivered again (its outcome looked for first: an earlier run may have recorded one), and, while that Redis has been
     * up for less than {@link JobQueue#LOST_ENTRY_GRACE}, not before it has (the value: when, {@link System#nanoTime}; 0
     * for no wait): by then the earlier run has stopped wherever it ran (its worker's beats find the entry pending nowhere
     * or taken, or its lease runs out), as for the jobs a restarted Redis lost whole, which the coordinator's reconciler
     * enqueues again after the same wait. Asked on the connection the read came over, right after it: the answer names
     * the server that answered the read or a later one. Unknown (Redis failed the question) holds every entry for the
     * whole grace.
     */
    private Map<String, Long> restartHolds(RedisCommands<String, String> connection, String agent, List<ClaimedJob> claimed) {
        if (claimed.isEmpty()) {
            return Map.of();
        }
        JobQueue.ServerProcess server;
        try {
            server = JobQueue.server(connection);
        } catch (RuntimeException e) {
            server = null;
        }
        // Uptime is the difference of two whole seconds: it may say a second more than the server has been up.
        Duration left = server == null ? JobQueue.LOST_ENTRY_GRACE : JobQueue.LOST_ENTRY_GRACE.minus(server.uptime()).plusSeconds(1);
        long until = left.isNegative() || left.isZero() ? 0 : System.nanoTime() + left.toNanos();
        Map<String, Long> holds = new java.util.HashMap<>();
        for (ClaimedJob job : claimed) {
            if (server == null || server.mayPredate(job.entryId())) {
                holds.put(job.key(), until);
            }
        }
        if (!holds.isEmpty() && until != 0) {
            LOG.warn("{} entr(ies) of {} came from a Redis {} and may have been delivered before it started: each waits {} s, "
                    + "then runs once Postgres says it has no outcome yet (an earlier run may still be stopping elsewhere)",
                    holds.size(), agent, server == null ? "that did not say how long it has been up"
                            : "up " + server.uptime().toSeconds() + " s (run_id " + server.runId() + ")",
                    TimeUnit.NANOSECONDS.toSeconds(until - System.nanoTime() + TimeUnit.SECONDS.toNanos(1) - 1));
        }
        return holds;
    }

    /** Jobs holding a slot: claimed and not yet done with their agent (finishing jobs wait for their write only). */
    private long runningJobs() {
        return inFlight.values().stream().filter(r -> !r.control().finishing()).count();
    }

    private void releaseLanes(boolean laned, int count) {
        if (laned && count > 0) {
            startLanes.release(count);
        }
    }

    /**
     * Runs a claimed job the caller has listed in flight ({@link #track}). Waits for the job's {@link #room} first (at
     * once, unless finished jobs fill it), listed in flight meanwhile so that its entry stays refreshed and is never
     * reclaimed; a stopping worker hands back a job still waiting.
     *
     * @return false when the wait was interrupted (the worker stops): the job went back; the caller sets the thread's
     *         interrupt again once it has handed back the rest
     */
    private boolean submit(ClaimedJob job, JobControl control) {
        try {
            room.acquire();
        } catch (InterruptedException e) {
            untrack(job, control);
            return false;
        }
        start(job, control);
        return true;
    }

    /** A tracked job that never took its room: what it holds given back, the job back to the queue. */
    private void untrack(ClaimedJob job, JobControl control) {
        control.leaveStartLane();
        inFlight.remove(job.key());
        slots.release();
        giveBack(job);
    }

    /** Lists a claimed job in flight, holding its slot and (when {@code laned}) start lane. */
    private JobControl track(ClaimedJob job, boolean laned) {
        JobControl control = new JobControl();
        control.holdSlot(slots::release);
        if (laned) {
            control.holdStartLane(startLanes::release);
        }
        inFlight.put(job.key(), new Running(job, control));
        return control;
    }

    /** Runs a tracked job whose room the caller holds. */
    private void start(ClaimedJob job, JobControl control) {
        try {
            jobs.execute(() -> {
                try {
                    runner.run(job, control);
                } catch (RuntimeException e) {
                    // Not acknowledged: the entry stays pending; this worker stops tracking it, so the reclaimer retries it.
                    LOG.error("Job {} failed before its outcome was recorded; left pending for the reclaimer: {}", job.key(),
                            e.toString(), e);
                } finally {
                    release(job, control);
                }
            });
        } catch (java.util.concurrent.RejectedExecutionException stopping) {
            // The worker stopped taking jobs meanwhile: this one never started; back to the queue for another worker.
            release(job, control);
            giveBack(job);
        }
    }

    /**
     * Gives a claimed job that never started back to the queue. A redelivered one stays pending instead: its earlier
     * run may have recorded its outcome, which only its check against Postgres (not done here) would see, and a handed
     * back job is a new entry that nobody checks; it is reclaimed, and checked, once this worker's heartbeat lapses.
     */
    private void giveBack(ClaimedJob job) {
        if (job.redelivered()) {
            LOG.info("Job {} was redelivered and not checked yet: left pending for another worker", job.key());
            return;
        }
        safely(() -> queue.handBack(job, worker.workerId()));
    }

    /** Gives back what a job held: its start lane, its slot unless its agent is done already, its room. */
    private void release(ClaimedJob job, JobControl control) {
        control.leaveStartLane();
        inFlight.remove(job.key());
        if (!control.finishing()) {
            slots.release();
        }
        room.release();
    }

    private void beat() {
        long sent = System.nanoTime();
        try {
            HEARTBEAT.run(redis, io.lettuce.core.ScriptOutputType.INTEGER, new String[] {keys.worker(worker.workerId())},
                    Long.toString(JobQueue.HEARTBEAT_TTL.toMillis()),
                    "agents", String.join(",", worker.agents()),
                    "slots", Integer.toString(slotCount),
                    "busy", Long.toString(runningJobs()),
                    "in_flight", String.join(",", inFlight.keySet()),
                    "heartbeat_at", clock.instant().toString(),
                    "pid", Long.toString(ProcessHandle.current().pid()));
            lastBeat = sent;
            redis.sadd(keys.workers(), worker.workerId());
            for (Running job : inFlight.values()) {
                if (job.control().finishing()) {
                    // Its agent is done; only its outcome's write is left, usually milliseconds away (at a thousand jobs
                    // a second, refreshing these was a third of a Redis command per job). Listed in in_flight above,
                    // it is not reclaimed however long a slow Postgres keeps it.
                    continue;
                }
                JobQueue.Ownership ownership = queue.refresh(job.claimed(), worker.workerId());
                if (ownership == JobQueue.Ownership.OWNED) {
                    job.checkedAt = sent;
                }
                if (ownership != JobQueue.Ownership.OWNED && job.control().unstoppable()) {
                    if (job.control().noteLost()) {
                        LOG.warn("Entry {} is no longer this worker's ({}), but its agent has exited: its outcome is recorded "
                                + "here (the first recorded wins; a worker that delivers it again finds it)", job.claimed().key(),
                                ownership == JobQueue.Ownership.TAKEN ? "reclaimed by another worker" : "pending nowhere");
                    }
                } else if (ownership == JobQueue.Ownership.TAKEN) {
                    LOG.warn("Entry {} was reclaimed by another worker; stopping it here", job.claimed().key());
                    job.control().stop(JobControl.StopReason.LOST);
                } else if (ownership == JobQueue.Ownership.GONE) {
                    // Pending nowhere while its agent runs: Redis lost it (restarted without the write). The job goes
                    // to another worker (delivered again, or enqueued again by the coordinator's reconciler, which waits
                    // JobQueue.LOST_ENTRY_GRACE for beats like this one); running on here would run it twice at once.
                    LOG.warn("Entry {} is pending nowhere (Redis lost it); stopping it here, it runs again elsewhere",
                            job.claimed().key());
                    job.control().stop(JobControl.StopReason.LOST);
                }
            }
        } catch (RedisException e) {
            // A refresh that failed leaves its entry's check time (and those after it) as it was: an entry Redis lost
            // in a restart, which a coordinator enqueues again after LOST_ENTRY_GRACE, is stopped by its own lease.
            LOG.warn("Heartbeat failed: {}", e.getMessage());
        }
    }

    /**
     * Stops the running agents once no heartbeat has reached Redis for {@link #LEASE}: their entries are this worker's
     * only while its heartbeat lives, and another worker that can reach Redis may reclaim them soon after it lapses. Stops
     * a running agent whose entry no beat found still this worker's for as long, too: a Redis that restarted may have
     * lost it, and a coordinator enqueue it again.
     * They stop as lost: nothing is recorded or acknowledged here; the job runs again where its entry goes. Jobs whose
     * agent is done only wait for their outcome's write and go on.
     */
    private void watchLease() {
        long now = System.nanoTime();
        long late = now - lastWatch - Duration.ofSeconds(1).toNanos();
        lastWatch = now;
        if (late > Duration.ofSeconds(2).toNanos() && !skippedLateTick) {
            // This tick came seconds late: the whole process was paused (a long GC, a stopped container). The beat that
            // is overdue as well gets its chance first; the next tick decides, however late it is.
            skippedLateTick = true;
            return;
        }
        skippedLateTick = false;
        long silent = now - lastBeat;
        if (silent < LEASE.toNanos()) {
            if (leaseLost) {
                leaseLost = false;
                LOG.info("Heartbeats reach Redis again; running jobs as before");
            }
            // Each entry has a lease of its own: one whose refresh has failed for as long (while the heartbeat got
            // through) may be an entry a restarted Redis lost, which a coordinator enqueues again.
            List<Running> unchecked = inFlight.values().stream()
                    .filter(r -> !r.control().unstoppable() && r.control().reason() == null && now - r.checkedAt >= LEASE.toNanos())
                    .toList();
            for (Running job : unchecked) {
                LOG.error("Entry {} could not be checked against Redis for {} s (the lease is {} s): stopping it here, since "
                        + "Redis may have lost it and the job may run again elsewhere", job.claimed().key(),
                        TimeUnit.NANOSECONDS.toSeconds(now - job.checkedAt), LEASE.toSeconds());
                job.control().stop(JobControl.StopReason.LOST);
            }
            return;
        }
        List<Running> running = inFlight.values().stream()
                .filter(r -> !r.control().unstoppable() && r.control().reason() == null).toList();
        if (!leaseLost || !running.isEmpty()) {
            LOG.error("No heartbeat has reached Redis for {} s (the lease is {} s): stopping {} running job(s) here, since "
                    + "another worker may reclaim them once this worker's heartbeat lapses; they run again there",
                    TimeUnit.NANOSECONDS.toSeconds(silent), LEASE.toSeconds(), running.size());
        }
        leaseLost = true;
        running.forEach(r -> r.control().stop(JobControl.StopReason.LOST));
    }

    /** No heartbeat has reached Redis for {@link #LEASE}: this worker's entries may soon be others'. */
    private boolean leaseOut() {
        return System.nanoTime() - lastBeat >= LEASE.toNanos();
    }

    /**
     * Reclaims what it can of the stale entries of every served agent. While some are left for want of a slot, the
     * claim loops take no new entries ({@link #staleWaiting}) and the next pass follows at once: under a backlog, a dead
     * worker's jobs would otherwise get only a share of the slots that free, a few seconds out of each period, and wait
     * minutes behind newer jobs.
     */
    private void reclaim() {
        try {
            while (running && !leaseOut() && reclaimPass()) {
                // Stale entries are left: the next pass at once.
            }
        } finally {
            staleWaiting = false;
        }
    }

    /**
     * @return true when stale entries may be left: no slot freed for one within {@link #RECLAIM_SLOT_WAIT}, or it took
     *     some from a window of {@link #RECLAIM_WINDOW} that was full
     */
    private boolean reclaimPass() {
        boolean more = false;
        // The waits for slots end within a few seconds, counted from the first (not from the pass's start, which a slow
        // Redis or Postgres may take up): the next pass looks at the entries again (others may have taken them, their
        // workers may be back).
        long deadline = 0;
        boolean waited = false;
        // Each pass starts at the next agent: one agent's stale entries that wait for slots do not hold up another's.
        List<String> agents = new ArrayList<>(worker.agents());
        java.util.Collections.rotate(agents, -(int) (reclaimPasses++ % agents.size()));
        // Each owner's in-flight list, read once a pass to pass over what live owners hold (not once an entry: a live
        // worker's thousand finished jobs waiting for Postgres would cost a thousand reads every pass); an entry to be
        // taken is checked again just before.
        Map<String, java.util.Set<String>> listed = new java.util.HashMap<>();
        for (String agent : agents) {
            try {
                JobQueue.Stale stale = queue.stale(agent, queueSettings.reclaimIdle(), RECLAIM_WINDOW, RECLAIM_SCAN,
                        entry -> inFlight.containsKey(entry.key()) || ownerStillWorksOn(entry, listed));
                int reclaimed = 0;
                for (PendingEntry entry : stale.entries()) {
                    if (!running || leaseOut()) {
                        return false;
                    }
                    // Asked again now, not from the pass's reading: a pass may outlast the reclaim idle time (a
                    // dead letter written to a slow Postgres, waits for slots), and a live owner may have listed it since.
                    if (inFlight.containsKey(entry.key()) || inFlightOf(entry.consumer()).contains(entry.key())) {
                        continue;
                    }
                    if (entry.deliveries() >= queueSettings.maxDeliveries()) {
                        // At most DEAD_LETTER_WRITERS at once (each writes to Postgres beside the jobs' outcomes); the
                        // rest wait for the next pass, unclaimed.
                        if (!deadLetterWriters.tryAcquire()) {
                            continue;
                        }
                        Optional<ClaimedJob> poisoned;
                        try {
                            poisoned = queue.claim(entry.stream(), worker.workerId(), queueSettings.reclaimIdle(), entry.entryId());
                        } catch (RuntimeException e) {
                            deadLetterWriters.release();
                            throw e;
                        }
                        if (poisoned.isPresent()) {
                            deadLetter(poisoned.get(), entry.deliveries());
                        } else {
                            deadLetterWriters.release();
                        }
                        continue;
                    }
                    // A stale entry has waited longer than anything in the streams: it takes the next slot that frees,
                    // not only one free at this instant (under a backlog none ever is). From the first one found until
                    // the passes end, the claim loops stand aside; one already waiting for a slot may take one more.
                    staleWaiting = true;
                    if (!waited) {
                        waited = true;
                        deadline = System.nanoTime() + RECLAIM_SLOT_WAIT.toNanos();
                    }
                    if (!slots.tryAcquire(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                        // Left for the next pass; the other agents' stale entries may still find a slot free now.
                        more = true;
                        break;
                    }
                    // Room too, within the same wait: this thread must not block on finished jobs' writes.
                    boolean roomTaken = false;
                    try {
                        roomTaken = room.tryAcquire(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                    } finally {
                        if (!roomTaken) {
                            slots.release(); // also when interrupted (stopping): the slot taken above is given back
                        }
                    }
                    if (!roomTaken) {
                        more = true;
                        break;
                    }
                    if (!running || leaseOut()) {
                        // Stopping began while this waited for a slot (often one a finishing job of this worker freed):
                        // claimed now, the entry would only be handed back, one delivery nearer the dead letters.
                        slots.release();
                        room.release();
                        return false;
                    }
                    Optional<ClaimedJob> job;
                    try {
                        job = queue.claim(entry.stream(), worker.workerId(), queueSettings.reclaimIdle(), entry.entryId());
                    } catch (RuntimeException e) {
                        slots.release();
                        room.release();
                        throw e;
                    }
                    if (job.isPresent()) {
                        reclaimed++;
                        metrics.reclaim(agent);
                        LOG.info("Reclaimed {} from {} (idle {} ms, delivery {})", entry.key(), entry.consumer(), entry.idleMs(),
                                entry.deliveries() + 1);
                        // A reclaimed job takes a start lane when one is free, and starts anyway when none is: it
                        // has waited long enough already.
                        boolean laned = lanedAgents.contains(agent) && startLanes.tryAcquire();
                        start(job.get(), track(job.get(), laned));
                    } else {
                        slots.release();
                        room.release();
                    }
                }
                // A full window may hide more stale entries behind it (once some were taken: entries live workers
                // still run would otherwise be read again and again).
                more |= reclaimed > 0 && stale.truncated();
            } catch (InterruptedException e) {
                // Stopping: the next worker's reclaimer takes what is left.
                Thread.currentThread().interrupt();
                return false;
            } catch (RedisException e) {
                LOG.warn("Reclaim pass for {} failed: {}", agent, e.getMessage());
            }
        }
        return more;
    }

    /**
     * Moves a job past its delivery limit to the dead letters, listed in flight meanwhile (as a job whose agent is done):
     * while a slow Postgres holds its failure row, no other worker takes the entry and dead-letters it a second time.
     * On a job thread, not the reclaimer's: its failure row waits for Postgres (up to the socket timeout per commit),
     * and the reclaimer, with the claim loops standing aside for it, must not wait with it.
     */
    private void deadLetter(ClaimedJob job, long deliveries) {
        JobControl control = new JobControl();
        control.holdSlot(() -> { });
        control.agentDone();
        inFlight.put(job.key(), new Running(job, control));
        try {
            jobs.execute(() -> {
                try {
                    runner.poisoned(job, deliveries);
                } catch (RuntimeException e) {
                    LOG.warn("Dead-lettering {} failed; it stays pending for the next reclaim pass: {}", job.key(), e.toString());
                } finally {
                    inFlight.remove(job.key());
                    deadLetterWriters.release();
                }
            });
        } catch (java.util.concurrent.RejectedExecutionException stopping) {
            // Stopping: left pending, and another worker's reclaimer dead-letters it.
            inFlight.remove(job.key());
            deadLetterWriters.release();
        }
    }

    /**
     * The entry's owner has a live heartbeat that lists it: it is working on it, however long that takes.
     *
     * @param listed the owners' lists read so far in this pass, by consumer name; an owner's is read on first need
     */
    private boolean ownerStillWorksOn(PendingEntry entry, Map<String, java.util.Set<String>> listed) {
        return listed.computeIfAbsent(entry.consumer(), this::inFlightOf).contains(entry.key());
    }

    /** The entries a worker's live heartbeat lists as its own; none when its heartbeat lapsed. */
    private java.util.Set<String> inFlightOf(String consumer) {
        String inFlightList = redis.hget(keys.worker(consumer), "in_flight");
        return inFlightList == null ? java.util.Set.of() : new java.util.HashSet<>(List.of(inFlightList.split(",")));
    }

    private void stopCancelled() {
        for (Running job : inFlight.values()) {
            if (job.control().finishing()) {
                continue;
            }
            try {
                var message = job.claimed().job();
                if (live.isCancelled(message.tenant(), message.taskId())) {
                    job.control().stop(JobControl.StopReason.CANCELLED);
                }
            } catch (RuntimeException e) {
                // a malformed entry or a Redis blip: the next check tries again
            }
        }
    }

    private void flushOutbox() {
        for (String agent : worker.agents()) {
            try {
                outcomes.flush(agent);
            } catch (RuntimeException e) {
                LOG.debug("Outbox flush for {} failed: {}", agent, e.getMessage());
            }
        }
    }

    private void tidy() {
        try {
            int released = runner.sweepExpiredHolds();
            if (released > 0) {
                LOG.info("Released {} budget hold(s) that lapsed unsettled (their workers died)", released);
            }
        } catch (RedisException e) {
            LOG.warn("Budget sweep failed: {}", e.getMessage());
        }
        try {
            queue.dropDeadLettersOlderThan(queueSettings.deadLetterMaxAge());
        } catch (RedisException e) {
            LOG.warn("Dropping old dead letters failed: {}", e.getMessage());
        }
        try {
            int pruned = runner.pruneOldWorktrees();
            if (pruned > 0) {
                LOG.info("Pruned {} worktree(s) and branch(es) older than WORKTREE_CLEANUP_DAYS", pruned);
            }
        } catch (RuntimeException e) {
            // A worktree it cannot walk (an agent left an unreadable folder) must not cost the streams their trimming.
            LOG.warn("Pruning old worktrees failed: {}", e.toString());
        }
        for (String agent : worker.agents()) {
            try {
                long trimmed = queue.trim(agent, queueSettings.keepAcked());
                if (trimmed > 0) {
                    LOG.debug("Trimmed {} acknowledged entries of {}", trimmed, agent);
                }
                for (Priority priority : Priority.values()) {
                    String stream = keys.jobStream(agent, priority);
                    for (String consumer : queue.consumers(stream)) {
                        if (!consumer.equals(worker.workerId()) && redis.exists(keys.worker(consumer)) == 0
                                && queue.removeConsumerIfIdle(stream, consumer)) {
                            LOG.info("Removed consumer {} of {}: no heartbeat and nothing pending", consumer, stream);
                        }
                    }
                }
            } catch (RedisException e) {
                LOG.warn("Housekeeping for {} failed: {}", agent, e.getMessage());
            }
        }
    }

    private void every(Duration period, Runnable task) {
        every(housekeeping, period, task);
    }

    private static void every(ScheduledExecutorService scheduler, Duration period, Runnable task) {
        scheduler.scheduleWithFixedDelay(logged(task), period.toMillis(), period.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** The task, its failures logged: thrown out of a scheduled task, one would end every later run. */
    private static Runnable logged(Runnable task) {
        return () -> {
            try {
                task.run();
            } catch (RuntimeException e) {
                LOG.warn("Housekeeping task failed: {}", e.toString());
            }
        };
    }

    private static boolean isNoGroup(RedisException e) {
        return e instanceof RedisCommandExecutionException && e.getMessage() != null && e.getMessage().startsWith("NOGROUP");
    }

    private static void safely(Runnable action) {
        try {
            action.run();
        } catch (RedisException e) {
            LOG.warn("Redis refused: {}", e.getMessage());
        }
    }

    /** Waits, returning false when interrupted. */
    private static boolean pause(Duration duration) {
        try {
            // A pause after a failed read, or while the agent's limit group can grant nothing, keeps either from becoming a hot loop.
            Thread.sleep(duration);
            return true;
        } catch (InterruptedException e) {
            return false;
        }
    }

    /** A job in flight: what was claimed, how to stop it, and when its entry was last found this worker's. */
    private static final class Running {
        private final ClaimedJob claimed;
        private final JobControl control;
        /**
         * When ({@link System#nanoTime}) the beat that last found the entry still this worker's was sent; at first, when
         * it was claimed. Written by the heartbeat thread, read by the lease watch.
         */
        volatile long checkedAt = System.nanoTime();

        Running(ClaimedJob claimed, JobControl control) {
            this.claimed = claimed;
            this.control = control;
        }

        ClaimedJob claimed() {
            return claimed;
        }

        JobControl control() {
            return control;
        }
    }
}
