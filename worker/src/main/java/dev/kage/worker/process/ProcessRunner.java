package dev.kage.worker.process;

import java.io.File;
import java.io.IOException;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs an agent as a process: argv only (never a shell), a clean environment, standard input from
 * {@code /dev/null}, output captured up to a cap, and a timeout that kills the whole process tree —
 * SIGTERM first, SIGKILL to whatever is still alive after {@link #KILL_GRACE}. Thread-safe.
 *
 * <p>When util-linux {@code setpriv} is installed, the agent is started through
 * {@code setpriv --pdeathsig KILL}, so it dies with the worker: a worker killed with {@code kill -9}
 * leaves no agent running on a job that another worker will reclaim. Processes are started from one
 * long-lived platform thread because the kernel sends that signal when the <em>thread</em> that
 * started the process ends, and virtual threads' carriers come and go.
 *
 * <p>When util-linux {@code setsid} is installed, the agent leads a process group of its own, and the whole group
 * is signalled — at a timeout or a stop, and also when the agent exits by itself while processes it started (a
 * dev server put in the background, a double-forked daemon) still run: none outlives its job. Only a process
 * that starts a session of its own leaves the group; while its parent lives it is still killed as a descendant.
 */
public final class ProcessRunner {
    private static final Logger LOG = LoggerFactory.getLogger(ProcessRunner.class);
    /**
     * How the JVM encodes a child's argv and environment: the locale's charset ({@code sun.jnu.encoding}), which
     * {@code -D} cannot change. Without a UTF-8 locale it is ASCII, and every other character would reach the agent
     * as {@code ?}.
     */
    static final Charset ARGV_CHARSET = argvCharset();
    private static final Path SETPRIV = Path.of("/usr/bin/setpriv");
    private static final Path SETSID = Path.of("/usr/bin/setsid");
    private static final Path KILL = Path.of("/bin/kill");
    private static final java.util.concurrent.ExecutorService SPAWNER = java.util.concurrent.Executors.newSingleThreadExecutor(
            Thread.ofPlatform().daemon().name("kage-spawner").factory());

    private final boolean dieWithWorker;
    private final boolean ownGroup;
    /** Where the running agents' groups are recorded for the next incarnation of this worker; null: nowhere. */
    private final GroupRecords records;

    /** A runner that records no groups (a worker killed with SIGKILL leaves what its agents started running). */
    public ProcessRunner() {
        this(null);
    }

    /**
     * @param groupRecords a folder of the worker's work dir where each running agent's process group is recorded (and
     *                     forgotten when it ends), so {@link #killLeftoverGroups} of the next incarnation of the same
     *                     worker kills what a {@code kill -9} of this one left running; null for none
     */
    public ProcessRunner(Path groupRecords) {
        this.records = groupRecords == null ? null : new GroupRecords(groupRecords);
        this.dieWithWorker = java.nio.file.Files.isExecutable(SETPRIV);
        if (!dieWithWorker) {
            LOG.warn("{} not found: agents started by this worker keep running if the worker is killed with SIGKILL", SETPRIV);
        }
        this.ownGroup = java.nio.file.Files.isExecutable(SETSID) && java.nio.file.Files.isExecutable(KILL);
        if (!ownGroup) {
            LOG.warn("{} or {} not found: processes an agent leaves behind when it exits keep running", SETSID, KILL);
            if (!ARGV_CHARSET.equals(StandardCharsets.UTF_8)) {
            LOG.warn("This worker's locale encodes process arguments as {}: a task description with other characters "
                    + "cannot reach an agent unchanged, so such a job fails with AgentStartError. Start the worker with a "
                    + "UTF-8 locale, e.g. LANG=C.UTF-8", ARGV_CHARSET);
        }
    }
    }

    /**
     * Kills the agents' process groups an earlier incarnation of this worker (the same work dir) recorded and left
     * running: it was killed without a shutdown ({@code kill -9}, OOM killer), and the processes its agents started
     * outlived their leaders. Only groups still provably the recorded ones are signalled (see {@link GroupRecords}).
     * Call at start-up, before any agent runs and before the worktrees they may write into are cleared.
     *
     * @return groups killed
     */
    public int killLeftoverGroups() {
        return records == null || !ownGroup ? 0 : records.killLeftovers(KILL_GRACE);
    }

    /**
     * As {@link #killLeftoverGroups()} for the groups another worker, one that ended without a shutdown, recorded in
     * {@code groupRecords} (its work dir's folder): a worker that starts clears what its host's earlier workers left.
     *
     * @return groups killed
     */
    public static int killLeftoverGroups(Path groupRecords) {
        return java.nio.file.Files.isExecutable(SETSID) && java.nio.file.Files.isExecutable(KILL)
                ? new GroupRecords(groupRecords).killLeftovers(KILL_GRACE) : 0;
    }

    /** Time between SIGTERM and SIGKILL. */
    public static final Duration KILL_GRACE = Duration.ofSeconds(5);
    /** Bytes of each stream kept from the start and from the end. */
    public static final int HEAD_BYTES = 256 * 1024;
    public static final int TAIL_BYTES = 256 * 1024;

    /** The index of the first argument {@code charset} cannot encode, or -1. */
    static int unencodable(List<String> argv, Charset charset) {
        for (int i = 0; i < argv.size(); i++) {
            if (!charset.newEncoder().canEncode(argv.get(i))) {
                return i;
            }
        }
        return -1;
    }

    private static Charset argvCharset() {
        try {
            return Charset.forName(System.getProperty("sun.jnu.encoding", "UTF-8"));
        } catch (RuntimeException unknown) {
            return StandardCharsets.UTF_8;
        }
    }

    /**
     * @param argv    program and arguments, passed to the OS as they are
     * @param workdir the process's working directory
     * @param env     the process's whole environment
     * @param timeout how long it may run
     * @throws IOException          when the program cannot be started
     * @throws InterruptedException when the calling thread is interrupted; the process tree is killed first
     */
    public ProcessOutcome run(List<String> argv, Path workdir, Map<String, String> env, Duration timeout)
            throws IOException, InterruptedException {
        return run(argv, workdir, env, timeout, () -> { });
    }

    /**
     * As {@link #run(List, Path, Map, Duration)}, calling {@code onStarted} as soon as the process exists
     * (before its output is read).
     */
    public ProcessOutcome run(List<String> argv, Path workdir, Map<String, String> env, Duration timeout, Runnable onStarted)
            throws IOException, InterruptedException {
        return run(argv, workdir, env, timeout, onStarted, OutputWatcher.NONE);
    }

    /**
     * As {@link #run(List, Path, Map, Duration, Runnable)}, showing standard output to {@code watcher} as it
     * arrives; when the watcher says stop, the process tree is killed at once and the outcome is
     * {@link ProcessOutcome#stopped()}.
     */
    public ProcessOutcome run(List<String> argv, Path workdir, Map<String, String> env, Duration timeout, Runnable onStarted,
                              OutputWatcher watcher) throws IOException, InterruptedException {
        List<String> command = new java.util.ArrayList<>();
        if (dieWithWorker) {
            command.addAll(List.of(SETPRIV.toString(), "--pdeathsig", "KILL", "--"));
        }
        if (ownGroup) {
            // The worker's child is never a group leader, so setsid makes it one without forking: its pid is the group's.
            command.addAll(List.of(SETSID.toString(), "--"));
        }
        command.addAll(argv);
        int unencodable = unencodable(argv, ARGV_CHARSET);
        if (unencodable >= 0) {
            // Refused rather than run with '?' in place of characters: a changed instruction is worse than none.
            throw new IOException("argument " + unencodable + " has characters this worker's locale (" + ARGV_CHARSET
                    + ") cannot pass to a process unchanged; start the worker with a UTF-8 locale, e.g. LANG=C.UTF-8");
        }
        ProcessBuilder builder = new ProcessBuilder(command).directory(workdir.toFile());
        builder.environment().clear();
        builder.environment().putAll(env);
        builder.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        long started = System.nanoTime();
        Process process = start(builder);
        boolean recorded = records != null && ownGroup && records.record(process.pid());
        try {
            return await(process, argv, timeout, onStarted, watcher, started);
        } finally {
            if (recorded) {
                records.forget(process.pid());
            }
        }
    }

    private ProcessOutcome await(Process process, List<String> argv, Duration timeout, Runnable onStarted, OutputWatcher watcher,
                                 long started) throws InterruptedException {
        onStarted.run();
        CappedOutput stdout = new CappedOutput(HEAD_BYTES, TAIL_BYTES);
        CappedOutput stderr = new CappedOutput(HEAD_BYTES / 4, TAIL_BYTES / 4);
        CompletableFuture<Void> stop = new CompletableFuture<>();
        CompletableFuture<Void> outReader = drain(process.getInputStream(), stdout, (chunk, length) -> {
            // Every chunk is shown, also after a stop: what the agent printed until it died was spent.
            if (!watcher.onOutput(chunk, length)) {
                stop.complete(null);
            }
        });
        CompletableFuture<Void> errReader = drain(process.getErrorStream(), stderr, (chunk, length) -> { });
        boolean timedOut = false;
        boolean killed = false;
        boolean stopped = false;
        try {
            CompletableFuture.anyOf(process.onExit(), stop).get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (stop.isDone() && process.isAlive()) {
                stopped = true;
                LOG.info("pid {} stopped by its output watcher; killing its process tree", process.pid());
                killTree(process, ownGroup);
            }
        } catch (TimeoutException e) {
            timedOut = true;
            LOG.info("pid {} passed its timeout of {}s; killing its process tree", process.pid(), timeout.toSeconds());
            killTree(process, ownGroup);
        } catch (ExecutionException e) {
            throw new IllegalStateException("waiting for pid " + process.pid(), e);
        } catch (InterruptedException e) {
            // Stopped from outside. The flag stays clear until the readers are done, so what the agent printed until
            // it died is read (and counted); the InterruptedException below carries the stop on.
            killed = true;
            killTree(process, ownGroup);
        }
        if (!killed && !timedOut && !stopped && ownGroup && ProcessGroups.alive(process.pid())) {
            // Before the output is awaited: what they inherited of its pipes would hold the readers open.
            LOG.info("pid {} exited, leaving processes in its group; killing them", process.pid());
            ProcessGroups.kill(process.pid(), KILL_GRACE);
        }
        awaitReader(outReader);
        awaitReader(errReader);
        if (killed) {
            throw new InterruptedException("run of " + argv.getFirst() + " stopped; its process tree was killed");
        }
        return new ProcessOutcome(process.exitValue(), timedOut, false, stopped, stdout.text(), stdout.tailText(), stderr.text(),
                stdout.totalBytes(), Duration.ofNanos(System.nanoTime() - started));
    }

    private Process start(ProcessBuilder builder) throws IOException, InterruptedException {
        Spawn spawn = new Spawn(builder);
        java.util.concurrent.Future<Process> started = SPAWNER.submit(spawn);
        try {
            return started.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof IOException io) {
                throw io;
            }
            throw new IOException(e.getCause());
        } catch (InterruptedException e) {
            // Stopped (a cancel, a lost lease, shutdown) while the start waited its turn. A process started anyway
            // would run with nothing to time, watch, record or stop it — beside the job's next run, on a worktree
            // already gone — so it is killed; a start not begun yet is skipped.
            Process orphan = spawn.abandon();
            if (orphan != null) {
                killTree(orphan, ownGroup);
            }
            throw e;
        }
    }

    /** A start on the spawner thread that its caller may give up on; thread-safe. */
    private final class Spawn implements java.util.concurrent.Callable<Process> {
        private final ProcessBuilder builder;
        private boolean abandoned;
        private Process process;

        Spawn(ProcessBuilder builder) {
            this.builder = builder;
        }

        @Override
        public Process call() throws IOException {
            synchronized (this) {
                if (abandoned) {
                    throw new IOException("not started: its run was stopped first");
                }
            }
            Process started = builder.start();
            synchronized (this) {
                if (!abandoned) {
                    process = started;
                    return started;
                }
            }
            // Given up on while it started: killed off the spawner thread, which other runs' starts wait for.
            Thread.ofVirtual().start(() -> killTree(started, ownGroup));
            return started;
        }

        /** @return the process if it was started for the caller, which must stop it; null when it never will be */
        synchronized Process abandon() {
            abandoned = true;
            return process;
        }
    }

    /**
     * SIGTERM to the process, every descendant and (when it leads one) its process group, then SIGKILL to those still
     * alive after the grace period.
     */
    static void killTree(Process process, boolean group) {
        List<ProcessHandle> tree = process.descendants().toList();
        if (group) {
            ProcessGroups.signal(process.pid(), "TERM");
        }
        process.destroy();
        tree.forEach(ProcessHandle::destroy);
        long deadline = System.nanoTime() + KILL_GRACE.toNanos();
        for (ProcessHandle handle : concat(process.toHandle(), tree)) {
            long left = deadline - System.nanoTime();
            try {
                handle.onExit().get(Math.max(0, left), TimeUnit.NANOSECONDS);
            } catch (TimeoutException | ExecutionException stillAlive) {
                handle.destroyForcibly();
            } catch (InterruptedException e) {
                handle.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
        // Children started after the first snapshot are caught here, and the group's members that are no descendants.
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        if (group) {
            ProcessGroups.kill(process.pid(), Duration.ofNanos(Math.max(0, deadline - System.nanoTime())));
        }
        try {
            process.waitFor(KILL_GRACE.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static List<ProcessHandle> concat(ProcessHandle first, List<ProcessHandle> rest) {
        return java.util.stream.Stream.concat(java.util.stream.Stream.of(first), rest.stream()).toList();
    }

    private static CompletableFuture<Void> drain(java.io.InputStream in, CappedOutput sink,
                                                 java.util.function.ObjIntConsumer<byte[]> listener) {
        return CompletableFuture.runAsync(() -> {
            try (in) {
                sink.drain(in, listener);
            } catch (IOException e) {
                // The stream closes when the process is killed; what was read is kept.
            }
        }, runnable -> Thread.ofVirtual().name("agent-output").start(runnable));
    }

    private static void awaitReader(CompletableFuture<Void> reader) {
        try {
            // A grandchild that inherited the pipe can keep it open after the process exits; don't wait forever.
            reader.get(KILL_GRACE.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException | ExecutionException e) {
            reader.cancel(true);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
