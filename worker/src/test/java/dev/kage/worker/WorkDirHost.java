package dev.kage.worker;

import dev.kage.worker.process.AgentHost;
import java.nio.file.Path;
import java.time.Duration;

/**
 * A worker's work-dir part alone, in a JVM of its own that a test kills with SIGKILL: locks {@code <root>/<name>}
 * ({@code {pid}} in the name is this process's pid), then either waits for ever ({@code -} for the pids file) or runs
 * {@code bash <fixture> <pids> hang} as an agent recording its group in the dir's {@code agent-groups}.
 * Arguments: work root, dir name, pids file or {@code -}, fixture script.
 */
public final class WorkDirHost {
    private WorkDirHost() {
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]).resolve(args[1].replace("{pid}", Long.toString(ProcessHandle.current().pid())));
        // A name with {pid} stands for a default id, as a worker without KAGE_WORKER_ID has.
        WorkDirLock lock = WorkDirLock.acquire(dir, dir.getFileName().toString(), args[1].contains("{pid}"), Duration.ZERO);
        System.out.println("holding " + lock.dir());
        if (args[2].equals("-")) {
            Thread.currentThread().join();
        }
        AgentHost.main(new String[] {dir.resolve(WorkerFactory.AGENT_GROUPS).toString(), args[2], args[3], dir.toString()});
    }
}
