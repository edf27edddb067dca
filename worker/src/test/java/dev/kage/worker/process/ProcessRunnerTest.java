package dev.kage.worker.process;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ProcessRunnerTest {
    private static final Map<String, String> ENV = Map.of("PATH", "/usr/local/bin:/usr/bin:/bin");
    private final ProcessRunner runner = new ProcessRunner();

    @TempDir
    Path dir;

    @Test
    void aTimeoutKillsTheWholeTreeEvenChildrenThatIgnoreSigterm() throws Exception {
        Path pids = dir.resolve("pids");
        ProcessOutcome outcome = runner.run(List.of("bash", fixture("ignore-term.sh"), pids.toString()), dir, ENV,
                Duration.ofSeconds(2));
        assertThat(outcome.timedOut()).isTrue();
        assertThat(outcome.succeeded()).isFalse();
        List<Long> tree = Arrays.stream(Files.readString(pids).trim().split(" ")).map(Long::parseLong).toList();
        assertThat(tree).hasSize(2);
        // A killed grandchild is reaped by init, not by us: it may linger a moment as a zombie, which runs nothing.
        for (long pid : tree) {
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertThat(running(pid)).as("pid %d runs", pid).isFalse());
        }
    }

    @Test
    void processesAnAgentLeavesBehindDieWhenItExits() throws Exception {
        Path pids = dir.resolve("left");
        ProcessOutcome outcome = runner.run(List.of("bash", fixture("leave-behind.sh"), pids.toString()), dir, ENV, Duration.ofSeconds(30));
        assertThat(outcome.succeeded()).isTrue();
        assertThat(outcome.stdout()).contains("done");
        for (long pid : pids(pids)) {
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertThat(running(pid)).as("pid %d runs", pid).isFalse());
        }
    }

    @Test
    void aTimeoutAlsoKillsAnOrphanTheAgentDoubleForked() throws Exception {
        Path pids = dir.resolve("orphans");
        ProcessOutcome outcome = runner.run(List.of("bash", fixture("leave-behind.sh"), pids.toString(), "hang"), dir, ENV,
                Duration.ofSeconds(2));
        assertThat(outcome.timedOut()).isTrue();
        for (long pid : pids(pids)) {
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertThat(running(pid)).as("pid %d runs", pid).isFalse());
        }
    }

    @Test
    void anAgentStoppedWhileItsStartWaitsItsTurnIsNeverLeftRunning() throws Exception {
        for (int i = 0; i < 5; i++) {
            Path pid = dir.resolve("pid-" + i);
            // Stopped (a cancel, a lost lease) just as its start was handed to the spawner.
            Thread.currentThread().interrupt();
            assertThatThrownBy(() -> runner.run(List.of("sh", "-c", "echo $$ > " + pid + "; exec sleep 60"), dir, ENV,
                    Duration.ofSeconds(60))).isInstanceOf(InterruptedException.class);
            assertThat(Thread.interrupted()).isFalse();
            // Not started, or started and killed: for a whole second no process of it runs.
            await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(5)).until(() -> !Files.exists(pid)
                    || Files.readString(pid).isBlank() || !running(Long.parseLong(Files.readString(pid).trim())));
        }
    }

    private static List<Long> pids(Path file) throws java.io.IOException {
        List<Long> pids = Arrays.stream(Files.readString(file).trim().split(" ")).map(Long::parseLong).toList();
        assertThat(pids).hasSize(2);
        return pids;
    }

    /** True while the process exists and is not a zombie. */
    static boolean running(long pid) throws java.io.IOException {
        Path stat = Path.of("/proc", Long.toString(pid), "stat");
        if (!Files.exists(stat)) {
            return false;
        }
        String text;
        try {
            text = Files.readString(stat);
        } catch (java.nio.file.NoSuchFileException gone) {
            return false;
        }
        return text.charAt(text.lastIndexOf(')') + 2) != 'Z';
    }

    @Test
    void aFloodIsCappedKeepingHeadAndTail() throws Exception {
        long bytes = 20_000_000;
        ProcessOutcome outcome = runner.run(List.of("bash", fixture("flood.sh"), Long.toString(bytes)), dir, ENV,
                Duration.ofSeconds(60));
        assertThat(outcome.succeeded()).isTrue();
        assertThat(outcome.stdoutBytes()).isEqualTo(bytes + 5);
        assertThat(outcome.stdout().length()).isLessThan(ProcessRunner.HEAD_BYTES + ProcessRunner.TAIL_BYTES + 100);
        assertThat(outcome.stdout()).contains("bytes omitted").endsWith("END\n");
        assertThat(outcome.stdoutTail()).endsWith("END\n");
    }

    @Test
    void theProcessSeesOnlyTheEnvironmentItIsGivenAndNoStdin() throws Exception {
        ProcessOutcome outcome = runner.run(List.of("bash", fixture("env-and-stdin.sh")), dir,
                Map.of("PATH", "/usr/bin:/bin", "ONLY_THIS", "yes"), Duration.ofSeconds(10));
        assertThat(outcome.exitCode()).isZero();
        assertThat(outcome.stdout()).contains("ONLY_THIS=yes").contains("STDIN:\n").doesNotContain("HOME=");
    }

    @Test
    void argumentsReachTheProgramAsIsWithoutAShell() throws Exception {
        Path marker = dir.resolve("pwned");
        String hostile = "x; touch " + marker + " $(touch " + marker + ") `touch " + marker + "` | tee " + marker;
        ProcessOutcome outcome = runner.run(List.of("printf", "%s", hostile), dir, ENV, Duration.ofSeconds(10));
        assertThat(outcome.stdout()).isEqualTo(hostile);
        assertThat(marker).doesNotExist();
    }

    @Test
    void theExitCodeAndStderrAreReported() throws Exception {
        ProcessOutcome outcome = runner.run(List.of("bash", "-c", "echo oops >&2; exit 7"), dir, ENV, Duration.ofSeconds(10));
        assertThat(outcome.exitCode()).isEqualTo(7);
        assertThat(outcome.stderr()).isEqualTo("oops\n");
        assertThat(outcome.timedOut()).isFalse();
    }

    static String fixture(String name) {
        return Path.of("src", "test", "resources", "fixtures", name).toAbsolutePath().toString();
    }

    @Test
    void anArgumentTheLocaleCannotCarryIsRefusedInsteadOfReachingTheAgentAsQuestionMarks() throws Exception {
        List<String> argv = List.of("printf", "%s", "fix the caf\u00e9 \uD83D\uDE42 \u202eRTL");
        assertThat(ProcessRunner.unencodable(argv, java.nio.charset.StandardCharsets.US_ASCII)).isEqualTo(2);
        assertThat(ProcessRunner.unencodable(argv, java.nio.charset.StandardCharsets.UTF_8)).isEqualTo(-1);
        if (ProcessRunner.ARGV_CHARSET.equals(java.nio.charset.StandardCharsets.UTF_8)) {
            ProcessOutcome outcome = runner.run(argv, dir, ENV, Duration.ofSeconds(10));
            assertThat(outcome.stdout()).isEqualTo(argv.get(2));
        } else {
            assertThatThrownBy(() -> runner.run(argv, dir, ENV, Duration.ofSeconds(10)))
                    .isInstanceOf(java.io.IOException.class).hasMessageContaining("argument 2").hasMessageContaining("LANG=C.UTF-8");
        }
    }
}
