package dev.kage.worker;

import dev.kage.agent.AgentCatalog;
import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Pattern;

/**
 * Settings only a worker reads. Immutable.
 *
 * @param workerId      this process's consumer name and heartbeat id ({@code KAGE_WORKER_ID}, default host-pid)
 * @param workDir       repository caches and worktrees live below it ({@code KAGE_WORK_DIR}, default ~/.kage/work/&lt;id&gt;)
 * @param defaultRepo   repository for tasks that name none ({@code KAGE_DEFAULT_REPO}); may be empty
 * @param agents        agents this worker serves ({@code KAGE_WORKER_AGENTS}, comma-separated; default all configured)
 * @param pushBranches  push each agent's branch to the repository's origin ({@code KAGE_PUSH_BRANCHES}, default true)
 * @param shutdownGrace how long running jobs may finish on shutdown ({@code KAGE_SHUTDOWN_GRACE_SECONDS}, default 30)
 * @param worktreePool  worktrees kept checked out and ready per repository, so a job's start skips {@code git worktree
 *                      add} ({@code KAGE_WORKTREE_POOL}, 0-64; 0 turns it off; {@value #POOL_AS_SLOTS} when unset: as
 *                      many as the worker's {@code MAX_PARALLEL_CLIS}, see {@link #worktreePool(int)}). They count
 *                      against {@code MAX_ACTIVE_WORKTREES} and give way to jobs when it is reached.
 */
public record WorkerSettings(String workerId, Path workDir, String defaultRepo, List<String> agents, boolean pushBranches,
                             Duration shutdownGrace, int worktreePool) {

    /** {@link #worktreePool} when {@code KAGE_WORKTREE_POOL} is unset: one ready worktree per agent slot. */
    public static final int POOL_AS_SLOTS = -1;

    /** Ready worktrees per repository: {@code KAGE_WORKTREE_POOL}, else one per slot (at most 64). */
    public int worktreePool(int maxParallelClis) {
        return worktreePool == POOL_AS_SLOTS ? Math.min(64, maxParallelClis) : worktreePool;
    }

    private static final Pattern ID = Pattern.compile("[A-Za-z0-9_.-]{1,100}");

    public static WorkerSettings load(Env env, AgentCatalog catalog) {
        String workerId = env.string("KAGE_WORKER_ID", defaultWorkerId());
        if (!ID.matcher(workerId).matches()) {
            throw new ConfigException("KAGE_WORKER_ID=" + workerId + ": must be 1-100 letters, digits, '.', '_' or '-'");
        }
        Path workDir = env.get("KAGE_WORK_DIR").map(Path::of)
                .orElse(Path.of(System.getProperty("user.home"), ".kage", "work"))
                .resolve(workerId).toAbsolutePath();
        List<String> agents = env.get("KAGE_WORKER_AGENTS")
                .map(v -> Arrays.stream(v.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList())
                .orElse(catalog.names());
        for (String agent : agents) {
            if (catalog.find(agent).isEmpty()) {
                throw new ConfigException("KAGE_WORKER_AGENTS names '" + agent + "', which " + AgentCatalog.VARIABLE
                        + " does not configure (configured: " + catalog.names() + ")");
            }
        }
        if (agents.isEmpty()) {
            throw new ConfigException("KAGE_WORKER_AGENTS: a worker must serve at least one agent");
        }
        return new WorkerSettings(workerId, workDir, env.string("KAGE_DEFAULT_REPO", ""), agents,
                env.bool("KAGE_PUSH_BRANCHES", true), Duration.ofSeconds(env.longBetween("KAGE_SHUTDOWN_GRACE_SECONDS", 1, 86_400, 30)),
                worktreePool(env));
    }

    private static int worktreePool(Env env) {
        if (env.get("KAGE_WORKTREE_POOL").isEmpty()) {
            return POOL_AS_SLOTS;
        }
        try {
            return env.intBetween("KAGE_WORKTREE_POOL", 0, 64, 0);
        } catch (ConfigException e) {
            throw new ConfigException("KAGE_WORKTREE_POOL=" + env.get("KAGE_WORKTREE_POOL").orElseThrow()
                    + ": must be an integer from 0 to 64 (unset: one per MAX_PARALLEL_CLIS slot)");
        }
    }

    /**
     * {@code KAGE_START_LANES}: how many jobs that start a process (not noop or HTTP agents) one worker holds between
     * claim and agent start at once, 1-1024; unset, as many as its slots ({@code MAX_PARALLEL_CLIS}: no limit beyond
     * them). Set it to the machine's cores to keep claim-to-start latency low when several jobs start at once (starting
     * is CPU work: with more starts than cores each waits on the others), at the cost of throughput when starts wait on
     * something else (a loaded machine, a slow disk, JVMs restarting): measured in the chaos suite, two lanes per worker
     * on two cores cut a fleet's completions several-fold while workers were restarted every few seconds.
     *
     * @param slots the worker's {@code MAX_PARALLEL_CLIS}, the default
     * @throws ConfigException naming the variable when it is not a whole number in range
     */
    public static int startLanes(Env env, int slots) {
        try {
            return env.intBetween("KAGE_START_LANES", 1, 1024, Math.max(1, slots));
        } catch (ConfigException e) {
            throw new ConfigException("KAGE_START_LANES=" + env.get("KAGE_START_LANES").orElse("")
                    + ": must be an integer from 1 to 1024 (default: MAX_PARALLEL_CLIS, " + slots + ")");
        }
    }

    private static String defaultWorkerId() {
        return defaultIdPrefix() + ProcessHandle.current().pid();
    }

    /**
     * What every default {@code KAGE_WORKER_ID} of this host begins with: the host name, then {@code -}; the process id
     * follows. A worker restarted without an id of its own gets a new one, and a new work dir
     * ({@link WorkDirLock#sweepPredecessors}).
     */
    public static String defaultIdPrefix() {
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (UnknownHostException e) {
            host = "worker";
        }
        return (host + "-").replaceAll("[^A-Za-z0-9_.-]", "-");
    }
}
