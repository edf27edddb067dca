package dev.kage.worker.worktree;

import dev.kage.task.UrlCredentials;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.stream.Stream;

/**
 * One bare clone per repository per worker ({@code <workDir>/repos}), one {@code git worktree} per
 * job ({@code <workDir>/worktrees}). Git operations on one clone are serialised by a lock per clone
 * (git fetch checks every worktree's HEAD, so it cannot overlap a worktree being added); fetches are
 * shared: a job must see every push made before it was queued, so a fetch that started after that serves it — it
 * neither asks the origin nor fetches (under a backlog one fetch serves every job queued before it); otherwise a job
 * asks the origin where its base branch is ({@code git ls-remote}, outside the lock) and fetches only when it moved. Different repositories proceed in parallel. At most {@code MAX_ACTIVE_WORKTREES} exist at
 * once: a job beyond that waits (interruptibly) for one to be removed. Worktrees and {@code kage/*} branches
 * older than {@code WORKTREE_CLEANUP_DAYS} that no job uses are pruned by {@link #pruneOlderThan}.
 *
 * <p>A job's start should not wait for {@code git worktree add} (a checkout of the whole tree under the clone's
 * lock): up to {@code KAGE_WORKTREE_POOL} worktrees per clone are kept ready, detached at the base commit of the
 * clone's last job and clean, and a job takes one and only moves its branch there ({@code git checkout -B}, outside
 * the lock; files change only when the base moved). A background thread per clone tops the pool up after each
 * take. Ready worktrees count against {@code MAX_ACTIVE_WORKTREES} but never make a job wait: a job that finds
 * every slot taken removes a ready worktree first, and a top-up never takes a slot a job waits for. Thread-safe.
 */
public final class WorktreeManager {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(WorktreeManager.class);

    /** Bytes of an agent's patch kept in its result row. */
    public static final int PATCH_BYTES = 64 * 1024;

    private final Path repos;
    private final Path worktrees;
    private final Map<Path, ReentrantLock> locks = new ConcurrentHashMap<>();
    /** Per clone: when (epoch ms) the last completed fetch started; written under the clone's lock. */
    private final Map<Path, Long> lastFetchStarted = new ConcurrentHashMap<>();
    private final java.util.concurrent.atomic.AtomicLong freshnessChecks = new java.util.concurrent.atomic.AtomicLong();

    /**
     * A fetch counts as made after a job was queued only when it started this much later (ms): room for the error of the
     * clock conversion of the queue time and for ms rounding.
     */
    public static final long FRESHNESS_MARGIN_MS = 100;
    private final java.util.concurrent.atomic.AtomicLong fetchesRun = new java.util.concurrent.atomic.AtomicLong();
    /** Per clone and base branch ({@code "<clone> <branch>"}): the commit its remote-tracking ref had at the last fetch. */
    private final Map<String, String> trackedSha = new ConcurrentHashMap<>();

    private final int maxActive;
    private final java.util.concurrent.Semaphore slots;
    /** Worktree paths removed without git whose registrations may not be pruned yet. */
    private final java.util.Set<Path> unpruned = ConcurrentHashMap.newKeySet();
    /**
     * Worktrees created and not yet removed by this manager, by path: each holds one of {@link #slots} and its job's use
     * (a path is never in two uses at once: ready paths are unique, a fresh one is its job's and uses are serialized).
     */
    private final Map<Path, Use> active = new ConcurrentHashMap<>();
    /**
     * Uses in progress by job ({@code dirName}: one per task and agent, as its branch {@code kage/<task>/<agent>} is): a
     * second use of the same job's worktree waits until the first one's is removed.
     */
    private final Map<String, Use> uses = new ConcurrentHashMap<>();

    /** One job's use of a worktree, from {@link #create} to {@link #remove}; identity matters, not contents. */
    private static final class Use {
        private final String name;
        /** The job's branch ({@code kage/<task>/<agent>}): the minute prune never deletes it while the use lasts. */
        private final String branch;
        private final java.util.concurrent.CountDownLatch ended = new java.util.concurrent.CountDownLatch(1);
        private volatile Worktree worktree;
        /** A ready worktree this use took and has not made active yet: the minute prune leaves its folder alone. */
        private volatile Path taking;

        Use(String name, String branch) {
            this.name = name;
            this.branch = branch;
        }
    }

    /** Ready worktrees per clone: checked out, detached, clean; each holds one of {@link #slots}. */
    private final Map<Path, java.util.Deque<Path>> ready = new ConcurrentHashMap<>();
    /** Per clone: the commit its ready worktrees are prepared at (the base of its last job). */
    private final Map<Path, String> readyBase = new ConcurrentHashMap<>();
    /** Clones whose pool a refill thread is filling now, and whether it was asked again meanwhile. */
    private final Map<Path, java.util.concurrent.atomic.AtomicBoolean> refills = new ConcurrentHashMap<>();
    private final java.util.concurrent.atomic.AtomicLong readyNames = new java.util.concurrent.atomic.AtomicLong();
    private final int poolSize;
    private volatile boolean closed;

    /** A manager with no limit on worktrees and no ready ones. */
    public WorktreeManager(Path workDir) {
        this(workDir, Integer.MAX_VALUE, 0);
    }

    /** @param maxActive worktrees that may exist at once ({@code MAX_ACTIVE_WORKTREES}); no ready ones */
    public WorktreeManager(Path workDir, int maxActive) {
        this(workDir, maxActive, 0);
    }

    /**
     * @param maxActive worktrees that may exist at once ({@code MAX_ACTIVE_WORKTREES}), ready ones included
     * @param poolSize  worktrees kept ready per repository ({@code KAGE_WORKTREE_POOL}); 0 for none
     */
    public WorktreeManager(Path workDir, int maxActive, int poolSize) {
        this.repos = workDir.resolve("repos");
        this.worktrees = workDir.resolve("worktrees");
        this.maxActive = maxActive;
        this.slots = new java.util.concurrent.Semaphore(maxActive, true);
        this.poolSize = poolSize;
    }

    /**
     * Fetches the repository into this worker's clone when the origin's base branch moved, and checks out
     * {@code branch} from {@code baseBranch} in a worktree of its own: a ready one of the clone's pool when there is
     * one (a {@code git checkout -B} in it, outside the clone's lock), else a fresh one named {@code dirName} (a
     * leftover worktree of the same name, from a crashed earlier run, is replaced). Then the pool is topped up in the
     * background. When {@code MAX_ACTIVE_WORKTREES} are in use, a ready worktree of any clone gives way first; with
     * none left, the job waits. {@code dirName} names the job (one per task and agent, like {@code branch}): while an
     * earlier use of it is not {@linkplain #remove removed} (a run still being stopped when the same job arrives again),
     * this one waits for that, holding no slot, so neither replaces the other's folder or branch.
     *
     * @throws GitException          when the repository cannot be cloned or the base branch does not exist
     * @throws InterruptedException  when the job is stopped while it waits for a free worktree
     */
    public Worktree create(String repo, String baseBranch, String branch, String dirName) throws InterruptedException {
        return create(repo, baseBranch, branch, dirName, System.currentTimeMillis());
    }

    /**
     * As {@link #create(String, String, String, String)} for a job that was queued at {@code queuedAtMillis} (this
     * machine's clock, epoch ms): the job must see every push made before then. When the clone's last fetch started
     * after that (with {@link #FRESHNESS_MARGIN_MS} to spare), the clone already holds all of it and the origin is not
     * asked again — under a backlog, one fetch serves every job queued before it.
     */
    public Worktree create(String repo, String baseBranch, String branch, String dirName, long queuedAtMillis)
            throws InterruptedException {
        if (repo.isBlank() || repo.startsWith("-")) {
            throw new GitException("repository '" + repo + "' is not a path or URL", false);
        }
        Use use = beginUse(dirName, branch);
        Path cache = repos.resolve(cacheName(repo));
        Path readyPath = null;
        boolean created = false;
        boolean slot = false;
        try {
            readyPath = takeReady(cache);
            use.taking = readyPath;
            if (readyPath == null && !slots.tryAcquire()) {
                if (!evictReady()) {
                    LOG.info("All {} worktrees (MAX_ACTIVE_WORKTREES) are in use; {} waits for one", maxActive, dirName);
                }
                slots.acquire();
            }
            slot = true;
            Worktree worktree = createHoldingSlot(repo, cache, baseBranch, branch, dirName, readyPath, queuedAtMillis);
            use.worktree = worktree;
            active.put(worktree.path(), use);
            use.taking = null;
            created = true;
            refill(cache, worktree.baseSha());
            return worktree;
        } finally {
            if (!created) {
                if (readyPath != null) {
                    discard(readyPath);
                }
                if (slot || readyPath != null) {
                    slots.release();
                }
                endUse(use);
            }
        }
    }

    private boolean beingTaken(Path path) {
        return uses.values().stream().anyMatch(use -> path.equals(use.taking));
    }

    private boolean branchInUse(String ref) {
        return uses.values().stream().anyMatch(use -> ref.equals("refs/heads/" + use.branch));
    }

    /**
     * Starts the job's use of its worktree: waits while an earlier use of the same job's (its path and branch) is not
     * removed yet, e.g. a run being stopped and cleaned up while the same task and agent arrive again on this worker.
     */
    private Use beginUse(String dirName, String branch) throws InterruptedException {
        Use use = new Use(dirName, branch);
        while (true) {
            Use earlier = uses.putIfAbsent(dirName, use);
            if (earlier == null) {
                return use;
            }
            LOG.info("Worktree {} is still in use by an earlier run of the same job; waiting for its removal", dirName);
            earlier.ended.await();
        }
    }

    private void endUse(Use use) {
        uses.remove(use.name, use);
        use.ended.countDown();
    }

    private Worktree createHoldingSlot(String repo, Path cache, String baseBranch, String branch, String dirName, Path readyPath,
                                       long queuedAtMillis) throws InterruptedException {
        // A fetch that started at or after this serves the job: after it was queued (with a margin for the conversion of
        // the queue's clock), and never later than now (a job queued a moment ago is served by a fetch after its arrival).
        long needsFetchAfter = Math.min(queuedAtMillis + FRESHNESS_MARGIN_MS, System.currentTimeMillis());
        Path path = readyPath != null ? readyPath : worktrees.resolve(dirName);
        String tracked = trackedSha.get(cache + " " + baseBranch);
        Long lastFetch = lastFetchStarted.get(cache);
        boolean freshEnough = tracked != null && lastFetch != null && lastFetch >= needsFetchAfter;
        // Outside the clone's lock, in parallel with other jobs: where the origin's base branch is now. When this
        // clone already has exactly that, no fetch is needed and the job is still as fresh as its arrival.
        String remoteSha = null;
        if (tracked != null && !freshEnough) {
            freshnessChecks.incrementAndGet();
            try {
                String line = Git.run(null, "ls-remote", "--", repo, "refs/heads/" + baseBranch);
                remoteSha = line.isEmpty() ? null : line.split("\\s+")[0];
            } catch (GitException e) {
                remoteSha = null; // the fetch below reports what is wrong
            }
        }
        String baseSha;
        if (readyPath != null && (freshEnough || (remoteSha != null && remoteSha.equals(tracked)))) {
            // A ready worktree and nothing to fetch: the clone's lock is not needed (only a fetch or an add needs it).
            // Taking it anyway queued every start behind the pool's niced top-ups, which hold it and starve when the
            // CPU is busy: ready checkouts took 2-3 s in the chaos suite instead of ~10 ms.
            Git.run(path, "checkout", "--quiet", "--force", "--ignore-other-worktrees", "-B", branch, tracked);
            return new Worktree(cache, path, branch, tracked, true);
        }
        ReentrantLock lock = locks.computeIfAbsent(cache, c -> new ReentrantLock());
        // A stop (cancel, shutdown) ends the wait: the lock's holder may be a fetch that waits for its timeout.
        lock.lockInterruptibly();
        try {
            cloneIfMissing(repo, cache);
            // One fetch serves every job that arrived before it started: jobs queued on the lock behind it skip theirs.
            // (Never an older one: a user who pushes, then submits, gets a worktree with the push.)
            // (Fetching outside the lock is not safe: git fetch checks every worktree's HEAD, and a worktree being
            // added has none yet — "fatal: bad object worktrees/<name>/HEAD".)
            if (freshEnough) {
                baseSha = tracked;
            } else if (remoteSha != null && remoteSha.equals(trackedSha.get(cache + " " + baseBranch))) {
                baseSha = remoteSha;
            } else {
                Long fetched = lastFetchStarted.get(cache);
                baseSha = fetchAndResolve(repo, cache, baseBranch, fetched == null || fetched < needsFetchAfter);
            }
            if (readyPath == null) {
                if (Files.exists(path)) {
                    try {
                        Git.run(cache, "worktree", "remove", "--force", path.toString());
                    } catch (GitException notRegistered) {
                        deleteRecursively(path);
                    }
                    Git.run(cache, "worktree", "prune");
                }
                if (unpruned.remove(path)) {
                    // This path's last worktree was removed without git: its registration would block the branch.
                    Git.run(cache, "worktree", "prune");
                }
                try {
                    Git.run(cache, "worktree", "add", "--quiet", "-B", branch, path.toString(), baseSha);
                } catch (GitException e) {
                    if (!String.valueOf(e.getMessage()).contains("already checked out")
                            && !String.valueOf(e.getMessage()).contains("already used by worktree")) {
                        throw e;
                    }
                    // A ready worktree an earlier run of this job took, removed without git, still holds its branch until
                    // a prune: a retry arriving while the pool is empty meets that. Pruned here, once, not before every add.
                    Git.run(cache, "worktree", "prune");
                    Git.run(cache, "worktree", "add", "--quiet", "-B", branch, path.toString(), baseSha);
                }
                return new Worktree(cache, path, branch, baseSha, false);
            }
        } catch (IOException e) {
            throw new GitException("cannot prepare " + path + ": " + e.getMessage(), true);
        } finally {
            lock.unlock();
        }
        // A ready worktree: only its branch and files move, outside the lock (its HEAD is valid throughout, so a fetch
        // beside it is safe). The same branch may still be registered to this job's earlier worktree, removed without
        // git and not yet pruned: nothing else can hold a kage/<task>/<agent> branch on this worker, so that is ignored.
        Git.run(path, "checkout", "--quiet", "--force", "--ignore-other-worktrees", "-B", branch, baseSha);
        return new Worktree(cache, path, branch, baseSha, true);
    }

    /** Under the clone's lock: a bare clone of {@code repo} at {@code cache} unless there is one. */
    private void cloneIfMissing(String repo, Path cache) throws IOException {
        Files.createDirectories(repos);
        Files.createDirectories(worktrees);
        if (!Files.exists(cache.resolve("HEAD"))) {
            Path partial = repos.resolve(cache.getFileName() + ".partial");
            deleteRecursively(partial);
            Git.run(null, "clone", "--bare", "--quiet", "--", repo, partial.toString());
            Files.move(partial, cache);
        }
    }

    /** Under the clone's lock: fetches when asked, then the base branch's commit as the clone has it now (remembered). */
    private String fetchAndResolve(String repo, Path cache, String baseBranch, boolean fetch) {
        if (fetch) {
            long started = System.currentTimeMillis();
            fetchesRun.incrementAndGet();
            Git.run(cache, "fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*");
            lastFetchStarted.put(cache, started);
        }
        String baseSha;
        try {
            baseSha = Git.run(cache, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/" + baseBranch + "^{commit}");
        } catch (GitException e) {
            throw new GitException("base branch '" + baseBranch + "' does not exist in " + repo, false);
        }
        trackedSha.put(cache + " " + baseBranch, baseSha);
        return baseSha;
    }

    /**
     * Prepares {@code repo} in the background before any job needs it (a worker's default repository at start): clones
     * or fetches it and fills its pool of ready worktrees at {@code baseBranch}, so the first jobs do not wait for a clone.
     * Failures are logged; the first job then reports them.
     *
     * @return the thread doing it (a test joins it), or null when there is nothing to prepare
     */
    public Thread prepare(String repo, String baseBranch) {
        if (poolSize == 0 || repo.isBlank() || repo.startsWith("-")) {
            return null;
        }
        Path cache = repos.resolve(cacheName(repo));
        return Thread.ofVirtual().name("kage-worktree-prepare").start(() -> {
            String baseSha;
            ReentrantLock lock = locks.computeIfAbsent(cache, c -> new ReentrantLock());
            lock.lock();
            try {
                cloneIfMissing(repo, cache);
                baseSha = fetchAndResolve(repo, cache, baseBranch, true);
            } catch (IOException | GitException e) {
                LOG.warn("Could not prepare {} ({}): {}", UrlCredentials.mask(repo), baseBranch, e.getMessage());
                return;
            } finally {
                lock.unlock();
            }
            refill(cache, baseSha);
        });
    }

    /** A ready worktree of this clone, which holds its slot from now on; null when there is none. */
    private Path takeReady(Path cache) {
        java.util.Deque<Path> pool = ready.get(cache);
        return pool == null ? null : pool.pollFirst();
    }

    /** Removes one ready worktree of any clone to free its slot; false when there was none. */
    private boolean evictReady() {
        for (java.util.Deque<Path> pool : ready.values()) {
            Path path = pool.pollLast();
            if (path != null) {
                discard(path);
                slots.release();
                return true;
            }
        }
        return false;
    }

    private void discard(Path path) {
        deleteRecursively(path);
        unpruned.add(path);
    }

    /**
     * Tops up the clone's pool to {@code poolSize} worktrees at {@code baseSha}, on one background thread per clone,
     * taking only slots nobody waits for. A call while that thread runs makes it look again before it ends.
     */
    private void refill(Path cache, String baseSha) {
        if (poolSize == 0 || closed) {
            return;
        }
        readyBase.put(cache, baseSha);
        java.util.concurrent.atomic.AtomicBoolean again = new java.util.concurrent.atomic.AtomicBoolean(true);
        java.util.concurrent.atomic.AtomicBoolean running = refills.putIfAbsent(cache, again);
        if (running != null) {
            running.set(true);
            return;
        }
        Thread.ofVirtual().name("kage-worktree-pool").start(() -> {
            try {
                while (true) {
                    again.set(false);
                    fillPool(cache);
                    if (!again.get()) {
                        refills.remove(cache);
                        // A call between the check and the removal found the entry and set the flag: look once more.
                        if (!again.get() || refills.putIfAbsent(cache, again) != null) {
                            return;
                        }
                    }
                }
            } catch (RuntimeException e) {
                refills.remove(cache);
                LOG.warn("Could not prepare a ready worktree for {}: {}", cache.getFileName(), e.getMessage());
            }
        });
    }

    private void fillPool(Path cache) {
        java.util.Deque<Path> pool = ready.computeIfAbsent(cache, c -> new java.util.concurrent.ConcurrentLinkedDeque<>());
        while (!closed && pool.size() < poolSize) {
            // A fair tryAcquire with a zero wait never takes a slot a job is waiting for.
            if (slots.hasQueuedThreads() || !tryAcquireSlot()) {
                return;
            }
            Path path = worktrees.resolve("ready-" + readyNames.incrementAndGet());
            boolean added = false;
            ReentrantLock lock = locks.computeIfAbsent(cache, c -> new ReentrantLock());
            lock.lock();
            try {
                // Niced: a top-up is for later jobs, and starting jobs (a checkout in a ready worktree, outside this lock)
                // should get the CPU first. A job that needs this lock meanwhile (a fetch, no ready worktree) waits for
                // one niced `worktree add` at most.
                Git.runNiced(cache, "worktree", "add", "--quiet", "--detach", path.toString(), readyBase.get(cache));
                added = true;
            } finally {
                lock.unlock();
                if (!added) {
                    deleteRecursively(path);
                    slots.release();
                }
            }
            pool.addLast(path);
        }
    }

    private boolean tryAcquireSlot() {
        try {
            return slots.tryAcquire(0, java.util.concurrent.TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** Runs {@code git --version} once, so the first job does not pay for the process launcher's start-up. */
    public void warmUp() {
        Git.run(null, "--version");
    }

    /** Worktrees ready for the next jobs, over all clones (for tests and metrics). */
    public int readyCount() {
        return ready.values().stream().mapToInt(java.util.Deque::size).sum();
    }

    /** Stops topping up pools and removes the ready worktrees (on shutdown). */
    public void close() {
        closed = true;
        while (evictReady()) {
            // each call removes one
        }
    }

    /** Times this manager asked the origin where a base branch is ({@code git ls-remote}; for tests and metrics). */
    public long freshnessChecks() {
        return freshnessChecks.get();
    }

    /** Fetches run so far by this manager (for tests and metrics). */
    public long fetchesRun() {
        return fetchesRun.get();
    }

    /**
     * Commits whatever the agent changed (and did not commit itself) on the worktree's branch.
     *
     * @return the branch head, {@code git diff --shortstat} against the base (empty when nothing changed) and the
     *         patch, capped at {@link #PATCH_BYTES} (null when nothing changed)
     */
    public Commit commit(Worktree worktree, String message) {
        // One git process for the common case of an agent that changed nothing: the status names HEAD too.
        String head = null;
        String checkedOut = null;
        boolean dirty = false;
        for (String line : Git.runNiced(worktree.path(), "status", "--porcelain=v2", "--branch").split("\n")) {
            if (line.startsWith("# branch.oid ")) {
                head = line.substring("# branch.oid ".length()).trim();
            } else if (line.startsWith("# branch.head ")) {
                checkedOut = line.substring("# branch.head ".length()).trim();
            } else if (!line.isBlank() && !line.startsWith("#")) {
                dirty = true;
            }
        }
        boolean elsewhere = !worktree.branch().equals(checkedOut);
        if (dirty) {
            if (elsewhere && checkedOut != null && !checkedOut.equals("(detached)")) {
                // HEAD is on a branch the agent checked out (its own, or one of the clone's, such as main): the worker's
                // commit must not move that branch. Detached at the same commit, the tree and index stay as they are.
                Git.runNiced(worktree.path(), "checkout", "--quiet", "--detach");
            }
            Git.runNiced(worktree.path(), "add", "-A");
            Git.runNiced(worktree.path(), "-c", "user.name=Kage Bunshin", "-c", "user.email=kage@localhost", "commit", "--quiet",
                    "--no-verify", "-m", message);
            head = Git.runNiced(worktree.path(), "rev-parse", "HEAD");
        }
        String stray = null;
        if (head != null && head.matches("[0-9a-f]{40,64}") && elsewhere) {
            if (descendsFrom(worktree, head)) {
                // The agent switched to a branch of its own, or detached HEAD, and committed there: its work is what the
                // job made, so the job's branch (the one recorded and pushed) is moved to it.
                Git.runNiced(worktree.path(), "update-ref", "refs/heads/" + worktree.branch(), head);
            } else {
                // It left HEAD elsewhere (another branch it looked at, an older commit): not the job's work. The job's
                // branch stays as it was, and so do the recorded commit and diff.
                stray = "the agent left HEAD " + ("(detached)".equals(checkedOut) ? "detached" : "on " + checkedOut) + " at " + head
                        + ", which does not come from the job's base " + worktree.baseSha() + ": what is there is not on "
                        + worktree.branch() + ", which is recorded as it is";
                LOG.warn("Worktree {}: {}", worktree.path(), stray);
                head = Git.runNiced(worktree.path(), "rev-parse", "refs/heads/" + worktree.branch());
            }
        }
        if (head == null || head.equals(worktree.baseSha())) {
            return new Commit(head == null ? worktree.baseSha() : head, "", null, stray);
        }
        // The short stat line, a blank line, then the patch: one process for both.
        Git.Capped diff = Git.runCapped(worktree.path(), PATCH_BYTES + 4096, true, "diff", "--no-color", "--no-ext-diff", "--shortstat",
                "--patch", worktree.baseSha(), head);
        String out = new String(diff.head(), StandardCharsets.UTF_8);
        int split = out.indexOf("\n\n");
        if (split < 0) {
            return new Commit(head, out.trim(), null, stray); // an agent's commits that cancel out: no difference to show
        }
        String stat = out.substring(0, split).trim();
        int patchStart = out.substring(0, split + 2).getBytes(StandardCharsets.UTF_8).length;
        long patchBytes = diff.totalBytes() - patchStart;
        byte[] kept = java.util.Arrays.copyOfRange(diff.head(), patchStart, (int) Math.min(diff.head().length, patchStart + (long) PATCH_BYTES));
        String patch = new String(kept, StandardCharsets.UTF_8);
        if (patchBytes > PATCH_BYTES) {
            patch += "\n[... " + (patchBytes - PATCH_BYTES) + " more bytes of the patch omitted ...]\n";
        }
        return new Commit(head, stat, patch, stray);
    }

    /** Whether {@code commit} is the job's base or comes after it. */
    private static boolean descendsFrom(Worktree worktree, String commit) {
        try {
            Git.runNiced(worktree.path(), "merge-base", "--is-ancestor", worktree.baseSha(), commit);
            return true;
        } catch (GitException notAnAncestor) {
            return false;
        }
    }

    /** Pushes the worktree's branch to the repository it was cloned from, replacing an older push of it. */
    public void push(Worktree worktree) {
        ReentrantLock lock = locks.computeIfAbsent(worktree.cache(), c -> new ReentrantLock());
        try {
            lock.lockInterruptibly();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GitException("interrupted while waiting to push " + worktree.branch(), true);
        }
        try {
            // Not niced, unlike the commit before it: it holds the clone's lock, which starting jobs (a fetch, a
            // worktree add) wait for. Niced on a busy machine, each push got a sliver of CPU while the pushes of the
            // jobs behind it and those starts queued on the lock: one job finished every 1.5-2 s per worker in the
            // worker-kill chaos test, whose restarting JVMs keep both cores busy.
            Git.run(worktree.cache(), "push", "--quiet", "--force", "origin",
                    "refs/heads/" + worktree.branch() + ":refs/heads/" + worktree.branch());
        } finally {
            lock.unlock();
        }
    }

    /**
     * Ends the job's use of the worktree (once: a repeated call, or one with a worktree already removed, changes nothing
     * — its path may be another use's by now). Removes the worktree's folder; the branch stays in the clone (and in the
     * origin when pushed). The folder is deleted without git and without the clone's lock (a {@code git worktree remove} there would hold up every job
     * of the clone waiting for a worktree); its registration is cleared by the next {@code git worktree prune}
     * ({@link #pruneOlderThan}, every minute), or before the next worktree of the same path (a retry of the job).
     */
    public void remove(Worktree worktree) {
        Use use = active.get(worktree.path());
        if (use == null || use.worktree != worktree) {
            // Removed before: the path may be another use's by now, which must be left alone.
            return;
        }
        try {
            deleteRecursively(worktree.path());
            unpruned.add(worktree.path());
        } finally {
            if (active.remove(worktree.path(), use)) {
                slots.release();
                endUse(use);
                String base = readyBase.get(worktree.cache());
                if (base != null) {
                    refill(worktree.cache(), base); // a pool short of slots can grow again
                }
            }
        }
    }

    /**
     * Removes what no job uses and is older than {@code age}: worktree folders (a removal that failed) by their
     * modification time, and {@code kage/*} branches of the clones by their last commit. Branches pushed to the
     * origin stay there.
     *
     * @return worktrees and branches removed
     */
    public int pruneOlderThan(java.time.Duration age) {
        long cutoffMillis = System.currentTimeMillis() - age.toMillis();
        int removed = 0;
        if (Files.isDirectory(worktrees)) {
            try (Stream<Path> entries = Files.list(worktrees)) {
                for (Path path : entries.toList()) {
                    try {
                        if (!active.containsKey(path) && !isReady(path) && !beingTaken(path)
                                && Files.getLastModifiedTime(path).toMillis() < cutoffMillis) {
                            deleteRecursively(path);
                            removed++;
                        }
                    } catch (java.nio.file.NoSuchFileException gone) {
                        // removed by its job meanwhile
                    }
                }
            } catch (IOException e) {
                LOG.warn("Cannot list {}: {}", worktrees, e.getMessage());
            }
        }
        if (!Files.isDirectory(repos)) {
            return removed;
        }
        java.util.Set<String> inUse = new java.util.HashSet<>();
        // Registrations of folders removed before this prune are cleared by it; later ones stay listed.
        java.util.Set<Path> pruned = java.util.Set.copyOf(unpruned);
        boolean allPruned = true;
        try (Stream<Path> caches = Files.list(repos)) {
            for (Path cache : caches.filter(p -> Files.exists(p.resolve("HEAD"))).toList()) {
                ReentrantLock lock = locks.computeIfAbsent(cache, c -> new ReentrantLock());
                lock.lock();
                try {
                    Git.run(cache, "worktree", "prune");
                    for (String line : Git.run(cache, "worktree", "list", "--porcelain").split("\n")) {
                        if (line.startsWith("branch ")) {
                            inUse.add(line.substring("branch ".length()));
                        }
                    }
                    String refs = Git.run(cache, "for-each-ref", "--format=%(refname) %(committerdate:unix)", "refs/heads/kage/");
                    for (String line : refs.split("\n")) {
                        String[] parts = line.split(" ");
                        // A job starting now may be checking its branch out (a ready worktree does so outside this lock),
                        // after the worktree list above was read: its use, registered before, is asked at the last moment.
                        if (parts.length == 2 && !inUse.contains(parts[0]) && Long.parseLong(parts[1]) * 1000 < cutoffMillis
                                && !branchInUse(parts[0])) {
                            Git.run(cache, "update-ref", "-d", parts[0]);
                            removed++;
                        }
                    }
                    // The clone's housekeeping, here under its lock and in the foreground (no job's git runs it: see
                    // Git#runCapped): a no-op until loose objects or packs pass git's thresholds (gc.auto, 6,700 loose
                    // objects; gc.autoPackLimit, 50 packs). Not niced, as a push is not: starting jobs that need the
                    // lock wait for it. With the network timeout: a big clone's full repack is long, and rare.
                    Git.runCapped(cache, 64 * 1024, false, Git.NETWORK_TIMEOUT, "gc", "--auto", "--quiet");
                } catch (GitException e) {
                    allPruned = false;
                    LOG.warn("Cannot prune old branches of {}: {}", cache, e.getMessage());
                } finally {
                    lock.unlock();
                }
            }
        } catch (IOException e) {
            LOG.warn("Cannot list {}: {}", repos, e.getMessage());
        }
        if (allPruned) {
            unpruned.removeAll(pruned);
        }
        return removed;
    }

    private boolean isReady(Path path) {
        return ready.values().stream().anyMatch(pool -> pool.contains(path));
    }

    /** Worktrees this manager holds now (created, not yet removed). */
    public int inUse() {
        return active.size();
    }

    /**
     * Clears what a worker killed mid-operation leaves behind: git lock files in its repository
     * caches (only this worker's process uses them, and none of its git commands runs yet) and stale
     * worktree registrations. Call once at start-up.
     */
    public void recoverAfterCrash() {
        if (!Files.isDirectory(repos)) {
            return;
        }
        try (Stream<Path> files = Files.walk(repos, 6)) {
            files.filter(p -> p.getFileName().toString().endsWith(".lock")).forEach(lock -> {
                try {
                    Files.deleteIfExists(lock);
                } catch (IOException e) {
                    throw new GitException("cannot remove stale git lock " + lock + ": " + e.getMessage(), false);
                }
            });
        } catch (IOException e) {
            throw new GitException("cannot scan " + repos + " for stale git locks: " + e.getMessage(), false);
        }
        try (Stream<Path> caches = Files.list(repos)) {
            caches.filter(p -> p.getFileName().toString().endsWith(".partial")).forEach(WorktreeManager::deleteRecursively);
        } catch (IOException e) {
            throw new GitException("cannot list " + repos + ": " + e.getMessage(), false);
        }
        deleteRecursively(worktrees);
        try (Stream<Path> caches = Files.list(repos)) {
            caches.filter(p -> Files.exists(p.resolve("HEAD"))).forEach(cache -> Git.run(cache, "worktree", "prune"));
        } catch (IOException e) {
            throw new GitException("cannot list " + repos + ": " + e.getMessage(), false);
        }
    }

    /** Worktrees present now. */
    public long activeWorktrees() {
        if (!Files.isDirectory(worktrees)) {
            return 0;
        }
        try (Stream<Path> entries = Files.list(worktrees)) {
            return entries.count();
        } catch (IOException e) {
            return 0;
        }
    }

    static String cacheName(String repo) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(repo.getBytes(StandardCharsets.UTF_8));
            String base = repo.replaceAll("\\.git/?$", "").replaceAll("/+$", "");
            base = base.substring(base.lastIndexOf('/') + 1).replaceAll("[^A-Za-z0-9_.-]", "_");
            if (base.isEmpty() || base.startsWith(".")) {
                base = "repo";
            }
            return base + "-" + HexFormat.of().formatHex(digest, 0, 6) + ".git";
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Removes {@code path} and what is below it, not following links; best effort (what cannot go is left). */
    public static void deleteRecursively(Path path) {
        if (!Files.exists(path)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(path)) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort; git worktree prune tidies what is left
                }
            });
        } catch (IOException | java.io.UncheckedIOException ignored) {
            // best effort (a folder it may not read stops the walk: git worktree prune, and the next pass, tidy the rest)
        }
    }

    /**
     * @param sha      the branch head after the run
     * @param diffStat {@code git diff --shortstat} against the base; empty when the agent changed nothing
     * @param patch    {@code git diff} against the base, its first {@link #PATCH_BYTES} bytes (with a note of what was
     *                 left out); null when the agent changed nothing
     * @param stray    why work the agent left elsewhere (HEAD on history that does not come from the base) is not on the
     *                 job's branch; null when there is none
     */
    public record Commit(String sha, String diffStat, String patch, String stray) {
        public Commit(String sha, String diffStat, String patch) {
            this(sha, diffStat, patch, null);
        }
    }
}
