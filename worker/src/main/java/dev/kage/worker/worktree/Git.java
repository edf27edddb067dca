package dev.kage.worker.worktree;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs {@code git} with argv (never a shell), no terminal prompts and only safe transports.
 * Thread-safe.
 */
final class Git {
    /** Transports a task's repository may use; {@code ext::} and friends could run commands. */
    static final String ALLOWED_PROTOCOLS = "file:git:http:https:ssh";
    /** How long one local git command may take, from its start. */
    static final java.time.Duration TIMEOUT = java.time.Duration.ofMinutes(5);
    /**
     * How long a clone, fetch or push may take, from its start: a first clone of a big repository takes long. A stall
     * ends sooner: over HTTP(S) git gives up when nothing at all arrives for two minutes ({@code http.lowSpeed*}; a
     * server preparing a pack sends keep-alives meanwhile).
     */
    static final java.time.Duration NETWORK_TIMEOUT = java.time.Duration.ofHours(1);
    private static final java.util.Set<String> NETWORK_COMMANDS = java.util.Set.of("clone", "fetch", "push");
    private static final String NICE = "/usr/bin/nice";
    private static final boolean NICE_AVAILABLE = java.nio.file.Files.isExecutable(Path.of(NICE));

    private Git() {
    }

    /** Standard output kept up to a cap, and how many bytes there were in all. */
    record Capped(byte[] head, long totalBytes) {
    }

    /**
     * @param cwd  working directory, or {@code null} for the current one
     * @param args arguments after {@code git}
     * @return standard output, trimmed
     * @throws GitException with git's message when it exits non-zero or takes longer than five minutes
     */
    static String run(Path cwd, String... args) {
        return new String(runCapped(cwd, Integer.MAX_VALUE, args).head(), StandardCharsets.UTF_8).trim();
    }

    /**
     * As {@link #run}, at a lower CPU priority ({@code nice}): for work after a job's agent has run (commit, diff) and
     * for preparing ready worktrees, so that on a busy machine the next job's start gets the CPU first.
     */
    static String runNiced(Path cwd, String... args) {
        return new String(runCapped(cwd, Integer.MAX_VALUE, true, args).head(), StandardCharsets.UTF_8).trim();
    }

    /**
     * As {@link #run}, keeping at most {@code maxBytes} of standard output (untrimmed) and counting the rest, so a
     * huge output (a diff of generated files) costs no memory.
     */
    static Capped runCapped(Path cwd, int maxBytes, String... args) {
        return runCapped(cwd, maxBytes, false, args);
    }

    /** As {@link #runCapped(Path, int, String...)}, at a lower CPU priority when {@code niced} (see {@link #runNiced}). */
    static Capped runCapped(Path cwd, int maxBytes, boolean niced, String... args) {
        return runCapped(cwd, maxBytes, niced, NETWORK_COMMANDS.contains(args[0]) ? NETWORK_TIMEOUT : TIMEOUT, args);
    }

    /** As {@link #runCapped(Path, int, boolean, String...)}, killed when it takes longer than {@code timeout}. */
    static Capped runCapped(Path cwd, int maxBytes, boolean niced, java.time.Duration timeout, String... args) {
        List<String> argv = new ArrayList<>(args.length + 8);
        if (niced && NICE_AVAILABLE) {
            argv.addAll(List.of(NICE, "-n", "10"));
        }
        argv.add("git");
        argv.add("-c");
        argv.add("core.hooksPath=/dev/null");
        argv.add("-c");
        argv.add("commit.gpgsign=false");
        argv.add("-c");
        argv.add("http.lowSpeedLimit=1");
        argv.add("-c");
        argv.add("http.lowSpeedTime=120");
        if (args[0].equals("gc")) {
            // In the foreground: its caller holds the clone's lock for as long as it runs.
            argv.add("-c");
            argv.add("gc.autoDetach=false");
        } else {
            // No automatic gc or maintenance after a commit or a fetch: git detaches it, and it packed refs and objects
            // of a clone outside its lock (a job's fetch --prune then failed on packed-refs.lock) and outlived the worker.
            // WorktreeManager#pruneOlderThan runs 'gc --auto' under the clone's lock instead.
            argv.add("-c");
            argv.add("gc.auto=0");
            argv.add("-c");
            argv.add("maintenance.auto=false");
        }
        argv.addAll(List.of(args));
        ProcessBuilder builder = new ProcessBuilder(argv).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        if (cwd != null) {
            builder.directory(cwd.toFile());
        }
        Map<String, String> env = builder.environment();
        env.put("GIT_TERMINAL_PROMPT", "0");
        env.put("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS);
        env.put("GIT_CONFIG_NOSYSTEM", "1");
        env.put("LC_ALL", "C");
        Process process;
        try {
            process = builder.start();
        } catch (IOException e) {
            throw new GitException("git could not be started (is it installed?): " + e.getMessage(), false);
        }
        try {
            // Both streams on threads of their own, and the wait on the process with its deadline from the start: a
            // push or fetch to a remote that stalls (a half-open connection) would otherwise block a read that no
            // timeout or interrupt ends, and the job (and the repository's lock) with it, for ever.
            var errors = read(process.getErrorStream(), Integer.MAX_VALUE);
            var output = read(process.getInputStream(), maxBytes);
            if (!process.waitFor(timeout.toNanos(), TimeUnit.NANOSECONDS)) {
                kill(process);
                throw new GitException("git " + String.join(" ", args) + ": timed out after " + timeout.toSeconds() + " s", true);
            }
            // git has exited: its output is read to the end even if a stop comes now (a push that succeeded is no
            // failure), and soon, unless something it started still holds the pipes.
            Capped out = drain(output, process);
            byte[] stderr = drain(errors, process).head();
            if (process.exitValue() != 0) {
                String message = new String(stderr, StandardCharsets.UTF_8).trim();
                // A lock another git process holds (or a crashed one left) and network trouble pass; the rest does not.
                boolean retryable = message.contains(".lock") || message.contains("Could not resolve host")
                        || message.contains("Connection timed out") || message.contains("Connection refused")
                        || message.contains("Operation too slow") || message.contains("early EOF")
                        || message.contains("remote end hung up") || message.contains("Connection reset");
                throw new GitException("git " + String.join(" ", args) + ": " + message, retryable);
            }
            return out;
        } catch (InterruptedException e) {
            kill(process);
            Thread.currentThread().interrupt();
            throw new GitException("interrupted while running git " + args[0], true);
        } catch (java.util.concurrent.ExecutionException e) {
            kill(process);
            throw new GitException("git " + args[0] + ": its output could not be read: " + e.getCause(), true);
        }
    }

    /** Reads a stream to its end on a virtual thread, keeping at most {@code maxBytes} and counting the rest. */
    private static java.util.concurrent.Future<Capped> read(java.io.InputStream stream, int maxBytes) {
        java.util.concurrent.FutureTask<Capped> task = new java.util.concurrent.FutureTask<>(() -> {
            java.io.ByteArrayOutputStream head = new java.io.ByteArrayOutputStream();
            long total = 0;
            try (var in = stream) {
                byte[] buffer = new byte[8192];
                int n;
                while ((n = in.read(buffer)) >= 0) {
                    int keep = (int) Math.max(0, Math.min(n, (long) maxBytes - total));
                    head.write(buffer, 0, keep);
                    total += n;
                }
            } catch (IOException closed) {
                // The process was killed: what was read is what there is.
            }
            return new Capped(head.toByteArray(), total);
        });
        Thread.ofVirtual().name("kage-git-reader").start(task);
        return task;
    }

    /** What a reader got, once git has exited; an interrupt meanwhile is kept for the caller. */
    private static Capped drain(java.util.concurrent.Future<Capped> reader, Process process)
            throws java.util.concurrent.ExecutionException {
        boolean interrupted = false;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        try {
            while (true) {
                try {
                    return reader.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (java.util.concurrent.TimeoutException heldOpen) {
                    // Something git started outlives it and holds the pipe open.
                    throw new GitException("git exited " + process.exitValue() + ", but a process it started holds its "
                            + "output open", true);
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Kills git and what it started (ssh, a remote helper), so that nothing holds its pipes or the repository. */
    private static void kill(Process process) {
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
    }
}
