package dev.kage.worker;

import dev.kage.config.ConfigException;
import dev.kage.worker.process.ProcessRunner;
import dev.kage.worker.worktree.WorktreeManager;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A worker's hold on its work dir ({@code KAGE_WORK_DIR/<worker id>}) for as long as it runs: an exclusive lock
 * ({@code fcntl}, through {@link FileChannel#lock}) on the file {@value #FILE} inside it, which the kernel drops when
 * the process ends, however it ends. Two things follow from it.
 * <ul>
 *   <li>A second worker started with the id of one that runs on the same host stops at start-up, naming
 *   {@code KAGE_WORKER_ID}. Before, the two shared a consumer name (each could acknowledge the other's jobs), the
 *   clones and the worktrees.</li>
 *   <li>A worker started without an id of its own gets {@code <host>-<pid>}: a new id, and a new work dir, each time it
 *   starts. What such a worker killed without a shutdown ({@code kill -9}, the OOM killer) left is found by the next
 *   worker that starts on the host ({@link #sweepPredecessors}): a work dir of that shape whose process is gone and
 *   whose lock nobody holds. The agents' processes it recorded are killed, then the dir is removed. Before, they ran on
 *   (burning tokens), and its clones stayed on disk for good.</li>
 * </ul>
 * Thread-safe; one per worker process. Nothing in the process may open and close {@value #FILE} of a dir it holds:
 * a POSIX record lock is released when its process closes any descriptor of the file.
 */
public final class WorkDirLock implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(WorkDirLock.class);
    /** The file inside a work dir that its worker holds locked, and in which it writes its pid. */
    public static final String FILE = "worker.lock";
    /**
     * How long a worker that starts waits for a process that holds its work dir to exit: one started again as its
     * predecessor is still exiting (a supervisor's restart after SIGKILL) goes on, two running at once do not.
     */
    public static final Duration PREDECESSOR_EXIT = Duration.ofSeconds(5);

    /** The work dirs this process holds. */
    private static final java.util.Set<Path> HELD = java.util.concurrent.ConcurrentHashMap.newKeySet();

    private final Path dir;
    private final FileChannel channel;
    private final FileLock lock;

    private WorkDirLock(Path dir, FileChannel channel, FileLock lock) {
        this.dir = dir;
        this.channel = channel;
        this.lock = lock;
    }

    /**
     * Creates {@code dir} when missing and locks it, waiting up to {@code wait} for another process that holds it.
     * On a file system that cannot lock files, logs why and goes on unlocked.
     *
     * @param workerId  the id the dir belongs to, for the message
     * @param defaultId the id is the default one ({@code <host>-<pid>}): written into the file, it lets a later worker
     *                  of the host clear the dir once this process is gone ({@link #sweepPredecessors}); a dir of an id an
     *                  operator chose is never cleared by another worker
     * @throws ConfigException naming {@code KAGE_WORKER_ID} when another process still holds it after {@code wait}, or
     *                         this one does
     */
    public static WorkDirLock acquire(Path dir, String workerId, boolean defaultId, Duration wait) {
        Path held = dir.toAbsolutePath().normalize();
        // Before any channel is opened: closing a second channel of the file would release this process's lock on it
        // (fcntl locks belong to the process and the file, not to the channel).
        if (!HELD.add(held)) {
            throw new ConfigException("KAGE_WORKER_ID=" + workerId + ": this process holds " + dir + " already");
        }
        try {
            return lock(dir, workerId, defaultId, wait);
        } catch (RuntimeException e) {
            HELD.remove(held);
            throw e;
        }
    }

    private static WorkDirLock lock(Path dir, String workerId, boolean defaultId, Duration wait) {
        Path file = dir.resolve(FILE);
        long deadline = System.nanoTime() + wait.toNanos();
        for (int attempt = 1; ; attempt++) {
            FileChannel channel;
            Object before;
            try {
                Files.createDirectories(dir);
                before = fileKey(file);
                channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            } catch (IOException e) {
                throw new ConfigException("KAGE_WORK_DIR: cannot create " + file + ": " + e.getMessage());
            }
            FileLock lock;
            try {
                lock = lockWithin(channel, Duration.ofNanos(Math.max(0, deadline - System.nanoTime())));
            } catch (IOException e) {
                LOG.warn("Cannot lock {} ({}): a second worker started with id {} on this host would not be stopped, and "
                        + "what this one leaves if killed is not cleared by its successors", file, e.getMessage(), workerId);
                return new WorkDirLock(dir, channel, null);
            }
            if (lock == null) {
                closeQuietly(channel);
                throw new ConfigException("KAGE_WORKER_ID=" + workerId + ": another worker process on this host runs with "
                        + "this id (" + holder(file) + ", holding " + file + "); give each worker its own KAGE_WORKER_ID");
            }
            // The file locked must still be the one at the path: a sweep that removed the dir meanwhile leaves this lock
            // on a file nobody else can find (the path then has a new one, or none).
            if (attempt < 3 && (before == null || !before.equals(fileKey(file)))) {
                closeQuietly(channel);
                continue;
            }
            try {
                channel.truncate(0);
                channel.write(StandardCharsets.US_ASCII.encode(ProcessHandle.current().pid() + (defaultId ? " " + DEFAULT_ID : "")
                        + "\n"), 0);
            } catch (IOException e) {
                LOG.warn("Cannot write this worker's pid into {}: {}", file, e.getMessage());
            }
            return new WorkDirLock(dir, channel, lock);
        }
    }

    /** Written after the pid in {@value #FILE} by a worker whose id is the default one. */
    static final String DEFAULT_ID = "default-id";

    /**
     * Clears each work dir beside this one that a worker with a default id of this host ({@code defaultIdPrefix}
     * followed by its pid) left: its {@value #FILE} says so (pid and {@value #DEFAULT_ID}), that process is gone, and
     * nobody holds the file. The agents' process groups it recorded are killed, then the dir is renamed out of the way
     * ({@code .<name>.deleting-<n>}) and deleted in the background; such a dir a crash left half deleted is deleted too.
     * A dir without the file (a worker older than it, which may still run), of an id an operator chose (the worker that
     * comes back with it clears its own), or whose pid lives is left alone. Slow when agents ignore SIGTERM (5 s each):
     * call it off the start-up path.
     *
     * @return the dirs cleared (renamed; their deletion may still run)
     */
    public List<Path> sweepPredecessors(String defaultIdPrefix) {
        List<Path> removed = new ArrayList<>();
        Path root = dir.getParent();
        if (lock == null || root == null) {
            return removed;
        }
        Pattern shape = Pattern.compile(Pattern.quote(defaultIdPrefix) + "([0-9]{1,10})");
        List<Path> candidates = new ArrayList<>();
        List<Path> halfDeleted = new ArrayList<>();
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(root)) {
            for (Path entry : entries) {
                String name = entry.getFileName().toString();
                if (!Files.isDirectory(entry, LinkOption.NOFOLLOW_LINKS) || entry.equals(dir)) {
                    continue;
                }
                if (name.startsWith(".") && name.contains(DELETING)) {
                    halfDeleted.add(entry);
                } else if (shape.matcher(name).matches() && Files.isRegularFile(entry.resolve(FILE), LinkOption.NOFOLLOW_LINKS)
                        && !HELD.contains(entry.toAbsolutePath().normalize())) {
                    candidates.add(entry);
                }
            }
        } catch (IOException e) {
            LOG.warn("Cannot list {} for the work dirs of workers that ended without a shutdown: {}", root, e.getMessage());
            return removed;
        }
        halfDeleted.forEach(WorkDirLock::deleteInBackground);
        for (Path entry : candidates) {
            Matcher name = shape.matcher(entry.getFileName().toString());
            if (name.matches() && ProcessHandle.of(Long.parseLong(name.group(1))).isEmpty() && sweep(entry, name.group(1))) {
                removed.add(entry);
            }
        }
        return removed;
    }

    /** Kills what the dead worker of {@code entry} left and clears the dir, if its file says so and nobody holds it. */
    private static boolean sweep(Path entry, String pid) {
        Path file = entry.resolve(FILE);
        try {
            if (!Files.readString(file, StandardCharsets.US_ASCII).strip().equals(pid + " " + DEFAULT_ID)) {
                return false;
            }
        } catch (IOException | RuntimeException e) {
            return false;
        }
        Path trash = entry.resolveSibling("." + entry.getFileName() + DELETING + System.nanoTime());
        try (FileChannel other = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            FileLock held = tryLock(other);
            if (held == null) {
                return false;
            }
            int killed = ProcessRunner.killLeftoverGroups(entry.resolve(WorkerFactory.AGENT_GROUPS));
            // Renamed while locked, in one step: never half deleted under its own name (a dir without its file is never
            // swept again), and gone from the name a worker could start with.
            Files.move(entry, trash, StandardCopyOption.ATOMIC_MOVE);
            LOG.warn("Clearing work dir {}: its worker ended without a shutdown (process {} is gone); {} agent process "
                    + "group(s) it left running were killed", entry, pid, killed);
        } catch (IOException | RuntimeException e) {
            LOG.warn("Cannot clear work dir {}, left by a worker that ended without a shutdown: {}", entry, e.getMessage());
            return false;
        }
        deleteInBackground(trash);
        return true;
    }

    /** Marks a work dir being deleted: {@code .<name>.deleting-<n>}. */
    private static final String DELETING = ".deleting-";

    private static void deleteInBackground(Path trash) {
        Thread.ofVirtual().name("kage-work-dir-sweep").start(() -> {
            WorktreeManager.deleteRecursively(trash);
            if (Files.exists(trash, LinkOption.NOFOLLOW_LINKS)) {
                LOG.warn("Could not delete all of {}; the next worker that starts here tries again", trash);
            }
        });
    }

    private static Object fileKey(Path file) {
        try {
            return Files.readAttributes(file, java.nio.file.attribute.BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS)
                    .fileKey();
        } catch (IOException e) {
            return null;
        }
    }

    /** This worker's work dir. */
    public Path dir() {
        return dir;
    }

    /** Releases the lock (the process's exit would too). */
    @Override
    public void close() {
        HELD.remove(dir.toAbsolutePath().normalize());
        try {
            if (lock != null) {
                lock.release();
            }
        } catch (IOException e) {
            LOG.debug("Releasing {}: {}", dir.resolve(FILE), e.getMessage());
        } finally {
            closeQuietly(channel);
        }
    }

    /** The lock at once when free; else the lock as soon as its holder lets go, or null after {@code wait}. */
    private static FileLock lockWithin(FileChannel channel, Duration wait) throws IOException {
        FileLock lock = tryLock(channel);
        if (lock != null || wait.isZero() || wait.isNegative()) {
            return lock;
        }
        CompletableFuture<FileLock> blocking = new CompletableFuture<>();
        // A platform thread: the wait is a blocking fcntl, which closing the channel interrupts.
        Thread waiter = Thread.ofPlatform().daemon().name("kage-work-dir-lock").start(() -> {
            try {
                blocking.complete(channel.lock());
            } catch (Throwable e) {
                blocking.completeExceptionally(e);
            }
        });
        try {
            return blocking.get(wait.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            channel.close(); // the waiter's lock call ends with AsynchronousCloseException
            joinQuietly(waiter);
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            channel.close();
            joinQuietly(waiter);
            throw new IOException("interrupted while waiting for the lock");
        } catch (ExecutionException e) {
            if (e.getCause() instanceof OverlappingFileLockException) {
                return null;
            }
            throw e.getCause() instanceof IOException io ? io : new IOException(e.getCause());
        }
    }

    /** The lock, or null when another process (or another channel of this one) holds it. */
    private static FileLock tryLock(FileChannel channel) throws IOException {
        try {
            return channel.tryLock();
        } catch (OverlappingFileLockException e) {
            return null;
        }
    }

    /** Who holds {@code file}, from the pid its holder wrote in it. */
    private static String holder(Path file) {
        try {
            String pid = Files.readString(file, StandardCharsets.US_ASCII).strip().split(" ")[0];
            return pid.matches("[0-9]{1,10}") ? "pid " + pid : "pid unknown";
        } catch (IOException e) {
            return "pid unknown";
        }
    }

    private static void joinQuietly(Thread thread) {
        try {
            thread.join(Duration.ofSeconds(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void closeQuietly(FileChannel channel) {
        try {
            channel.close();
        } catch (IOException e) {
            LOG.debug("Closing a work dir lock: {}", e.getMessage());
        }
    }
}
