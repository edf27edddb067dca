package dev.kage.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.kage.config.ConfigException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Work dirs held by real worker-like processes (their own JVMs, killed with SIGKILL): one worker per id on a host, and
 * what a worker with a default id leaves when it is killed is cleared by the next worker that starts there.
 */
class WorkDirLockTest {
    private static final String PREFIX = "testhost-";

    @TempDir
    Path dir;

    private final List<Process> hosts = new ArrayList<>();
    private final List<Long> leftovers = new ArrayList<>();

    @AfterEach
    void stopEverything() throws Exception {
        for (Process host : hosts) {
            host.destroyForcibly();
            host.waitFor(30, TimeUnit.SECONDS);
        }
        for (long pid : leftovers) {
            ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
        }
    }

    @Test
    void aSecondWorkerWithTheIdOfARunningOneStopsAtStartUpNamingTheVariableAndOneRestartedAfterAKillGoesOn() throws Exception {
        Path root = dir.resolve("work");
        Process first = host(root, "w1", "-", "w1");
        awaitHolding(first, root.resolve("w1"));

        assertThatThrownBy(() -> WorkDirLock.acquire(root.resolve("w1"), "w1", false, Duration.ofMillis(300)))
                .isInstanceOf(ConfigException.class)
                .hasMessageContaining("KAGE_WORKER_ID=w1: another worker process on this host runs with this id (pid "
                        + first.pid() + ", holding " + root.resolve("w1").resolve(WorkDirLock.FILE) + ")");

        // A worker started again while its killed predecessor is still exiting waits for it, then goes on.
        CompletableFuture<WorkDirLock> restarted = CompletableFuture.supplyAsync(() ->
                WorkDirLock.acquire(root.resolve("w1"), "w1", false, Duration.ofSeconds(30)));
        await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(5)).until(() -> !restarted.isDone());
        first.destroyForcibly();
        try (WorkDirLock lock = restarted.get(30, TimeUnit.SECONDS)) {
            // (Not read here: closing any descriptor of the file would release this process's lock on it.)
            // The same dir twice in one process is refused too, and without a second channel on the file, whose closing
            // would have released this process's lock: another process still cannot take it.
            assertThatThrownBy(() -> WorkDirLock.acquire(root.resolve("w1"), "w1", false, Duration.ofMillis(100)))
                    .isInstanceOf(ConfigException.class).hasMessageContaining("KAGE_WORKER_ID=w1: this process holds");
            Process second = host(root, "w1", "-", "w1-second");
            assertThat(second.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(second.exitValue()).isNotZero();
            assertThat(Files.readString(dir.resolve("w1-second.log"))).contains("another worker process on this host runs "
                    + "with this id (pid " + ProcessHandle.current().pid());
        }
        try (WorkDirLock again = WorkDirLock.acquire(root.resolve("w1"), "w1", false, Duration.ZERO)) {
            assertThat(again.dir()).isEqualTo(root.resolve("w1"));
        }
    }

    @Test
    void theNextWorkerOfTheHostKillsWhatADefaultIdWorkerKilledWithoutAShutdownLeftAndRemovesItsDirAndNothingElse()
            throws Exception {
        Path root = dir.resolve("work");
        Path deadPids = dir.resolve("dead.pids");
        Process dead = host(root, PREFIX + "{pid}", deadPids.toString(), "dead");
        Path deadDir = root.resolve(PREFIX + dead.pid());
        Process live = host(root, PREFIX + "{pid}", "-", "live");
        Path liveDir = root.resolve(PREFIX + live.pid());
        awaitHolding(live, liveDir);
        await().atMost(Duration.ofSeconds(60)).until(() -> Files.exists(deadPids) && Files.readString(deadPids).trim().contains(" "));
        List<Long> left = Arrays.stream(Files.readString(deadPids).trim().split(" ")).map(Long::parseLong).toList();
        leftovers.addAll(left);
        await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
            try (var records = Files.list(deadDir.resolve(WorkerFactory.AGENT_GROUPS))) {
                assertThat(records.toList()).as("the running agent's group is recorded").hasSize(1);
            }
        });
        // Dirs that are not to go: an id an operator chose, one of a worker older than the lock file (it may run), one
        // whose pid lives (here init's), whatever their locks say.
        Path chosen = Files.createDirectories(root.resolve("operator-chosen"));
        Files.writeString(chosen.resolve(WorkDirLock.FILE), "");
        Path older = Files.createDirectories(root.resolve(PREFIX + "999999999").resolve("repos"));
        Path pidLives = Files.createDirectories(root.resolve(PREFIX + "1"));
        Files.writeString(pidLives.resolve(WorkDirLock.FILE), "1 " + WorkDirLock.DEFAULT_ID + "\n");
        // An id an operator chose that looks like a default one (worker-2): its file does not say default-id.
        Path lookalike = Files.createDirectories(root.resolve(PREFIX + "999999998"));
        Files.writeString(lookalike.resolve(WorkDirLock.FILE), "999999998\n");
        // What a sweep killed midway left: renamed, half deleted.
        Path halfDeleted = Files.createDirectories(root.resolve("." + PREFIX + "5.deleting-42").resolve("repos").resolve("x"));

        dead.destroyForcibly(); // SIGKILL: no shutdown
        assertThat(dead.waitFor(30, TimeUnit.SECONDS)).isTrue();
        for (long pid : left) {
            assertThat(alive(pid)).as("pid %d outlives its killed worker", pid).isTrue();
        }

        try (WorkDirLock next = WorkDirLock.acquire(root.resolve("next"), "next", false, Duration.ZERO)) {
            assertThat(next.sweepPredecessors(PREFIX)).containsExactly(deadDir);
        }
        for (long pid : left) {
            await().atMost(Duration.ofSeconds(15)).untilAsserted(() -> assertThat(alive(pid)).as("pid %d runs", pid).isFalse());
        }
        assertThat(deadDir).doesNotExist();
        await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
            try (var entries = Files.list(root)) {
                assertThat(entries.map(p -> p.getFileName().toString()).toList()).as("deleted in the background")
                        .noneMatch(name -> name.contains(".deleting-"));
            }
        });
        assertThat(halfDeleted).doesNotExist();
        assertThat(liveDir.resolve(WorkDirLock.FILE)).exists();
        assertThat(live.isAlive()).isTrue();
        assertThat(chosen).exists();
        assertThat(older).exists();
        assertThat(pidLives).exists();
        assertThat(lookalike).exists();
    }

    private Process host(Path root, String name, String pids, String log) throws IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process process = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), WorkDirHost.class.getName(),
                root.toString(), name, pids, fixture("leave-behind.sh"))
                .redirectErrorStream(true).redirectOutput(dir.resolve(log + ".log").toFile()).start();
        hosts.add(process);
        return process;
    }

    /** Until {@code host} holds {@code workDir}: its pid is in the lock file, which it writes once it holds the lock. */
    private static void awaitHolding(Process host, Path workDir) {
        await().atMost(Duration.ofSeconds(60)).until(() -> {
            assertThat(host.isAlive()).as("the host runs").isTrue();
            Path file = workDir.resolve(WorkDirLock.FILE);
            return Files.exists(file) && Files.readString(file).strip().split(" ")[0].equals(Long.toString(host.pid()));
        });
    }

    private static String fixture(String name) {
        return Path.of("src", "test", "resources", "fixtures", name).toAbsolutePath().toString();
    }

    /** Whether {@code pid} runs (a zombie does not). */
    private static boolean alive(long pid) throws IOException {
        Path stat = Path.of("/proc", Long.toString(pid), "stat");
        try {
            String text = Files.readString(stat);
            return text.charAt(text.lastIndexOf(')') + 2) != 'Z';
        } catch (java.nio.file.NoSuchFileException e) {
            return false;
        }
    }
}
