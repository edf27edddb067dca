package dev.kage.worker.process;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * A worker's agent-running part alone, in a JVM of its own that a test kills with SIGKILL: runs {@code bash <fixture>
 * <pids> hang} through a {@link ProcessRunner} recording its groups in {@code <groups>}.
 * Arguments: groups folder, pids file, fixture script, working directory.
 */
public final class AgentHost {
    private AgentHost() {
    }

    public static void main(String[] args) throws Exception {
        ProcessRunner runner = new ProcessRunner(Path.of(args[0]));
        runner.run(List.of("bash", args[2], args[1], "hang"), Path.of(args[3]), Map.of("PATH", "/usr/local/bin:/usr/bin:/bin"),
                Duration.ofMinutes(5));
    }
}
