package dev.kage.worker.process;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A worker killed with SIGKILL while its agent runs: the agent (its group's leader) dies with it, the processes the agent
 * started do not; the next incarnation of the worker (same work dir) kills them from the group records, and nothing
 * else.
 */
class LeftoverGroupsTest {
    @TempDir
    Path dir;

    @Test
    void theNextIncarnationKillsWhatAnAgentOfAWorkerKilledWithSigkillLeftRunning() throws Exception {
        Path groups = dir.resolve("work").resolve("agent-groups");
        Path pids = dir.resolve("pids");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process worker = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), AgentHost.class.getName(),
                groups.toString(), pids.toString(), ProcessRunnerTest.fixture("leave-behind.sh"), dir.toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("worker.log").toFile()).start();
        List<Long> left;
        try {
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.exists(pids) && Files.readString(pids).trim().contains(" "));
            left = Arrays.stream(Files.readString(pids).trim().split(" ")).map(Long::parseLong).toList();
            // The record is written once the spawn returns, which the agent's first writes may beat (seen in CI).
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.isDirectory(groups));
            await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
                try (var records = Files.list(groups)) {
                    assertThat(records.toList()).as("the running agent's group is recorded").hasSize(1);
                }
            });
        } finally {
            worker.destroyForcibly(); // SIGKILL: no shutdown hook, no finally
            worker.waitFor(30, TimeUnit.SECONDS);
        }
        try {
            for (long pid : left) {
                assertThat(ProcessRunnerTest.running(pid)).as("pid %d outlives the killed worker", pid).isTrue();
            }

            assertThat(new ProcessRunner(groups).killLeftoverGroups()).isEqualTo(1);
            for (long pid : left) {
                await().atMost(Duration.ofSeconds(15)).untilAsserted(() ->
                        assertThat(ProcessRunnerTest.running(pid)).as("pid %d runs", pid).isFalse());
            }
            try (var records = Files.list(groups)) {
                assertThat(records.toList()).isEmpty();
            }
        } finally {
            for (long pid : left) {
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
            }
        }
    }

    @Test
    void aRecordWhoseGroupIdNowNamesAnotherProcessOrAnotherBootKillsNothing() throws Exception {
        Path groups = dir.resolve("agent-groups");
        Files.createDirectories(groups);
        // A group of its own that is not the one recorded: its leader started at another time (the pid was reused).
        Process other = new ProcessBuilder("setsid", "sleep", "300").start();
        try {
            long pid = other.pid();
            long started = GroupRecords.startTime(pid).orElseThrow();
            String boot = Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim();
            Files.writeString(groups.resolve(Long.toString(pid)), boot + " " + (started - 1) + "\n");
            assertThat(new ProcessRunner(groups).killLeftoverGroups()).isZero();
            assertThat(other.isAlive()).isTrue();

            // The same start time but recorded before a reboot.
            Files.writeString(groups.resolve(Long.toString(pid)), "another-boot " + started + "\n");
            assertThat(new ProcessRunner(groups).killLeftoverGroups()).isZero();
            assertThat(other.isAlive()).isTrue();
            try (var records = Files.list(groups)) {
                assertThat(records.toList()).as("records are read once").isEmpty();
            }

            // The record as it was written: this group is the one recorded, and goes.
            Files.writeString(groups.resolve(Long.toString(pid)), boot + " " + started + "\n");
            assertThat(new ProcessRunner(groups).killLeftoverGroups()).isEqualTo(1);
            assertThat(other.waitFor(15, TimeUnit.SECONDS)).isTrue();
        } finally {
            other.destroyForcibly();
        }
    }
}
