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
    private static final long TIMEOUT_SECONDS = 300;
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
     * As {@link #run}, at a lower CPU priority ({@code nice}): for work after a job's agent has run (commit, push) and
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
        List<String> argv = new ArrayList<>(args.length + 8);
        if (niced && NICE_AVAILABLE) {
            argv.addAll(List.of(NICE, "-n", "10"));
        }
        argv.add("git");
        argv.add("-c");
        argv.add("core.hooksPath=/dev/null");
        argv.add("-c");
        argv.add("commit.gpgsign=false");
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
        try {
            Process process = builder.start();
            var errors = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                try {
                    return process.getErrorStream().readAllBytes();
                } catch (IOException e) {
                    return new byte[0];
                }
            }, runnable -> Thread.ofVirtual().start(runnable));
            java.io.ByteArrayOutputStream head = new java.io.ByteArrayOutputStream();
            long total = 0;
            try (var in = process.getInputStream()) {
                byte[] buffer = new byte[8192];
                int n;
                while ((n = in.read(buffer)) >= 0) {
                    int keep = (int) Math.max(0, Math.min(n, (long) maxBytes - total));
                    head.write(buffer, 0, keep);
                    total += n;
                }
            }
            var stderr = errors.join();
            if (!process.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                throw new GitException("git " + String.join(" ", args) + ": timed out", true);
            }
            if (process.exitValue() != 0) {
                String message = new String(stderr, StandardCharsets.UTF_8).trim();
                // A lock another git process holds (or a crashed one left) and network trouble pass; the rest does not.
                boolean retryable = message.contains(".lock") || message.contains("Could not resolve host")
                        || message.contains("Connection timed out") || message.contains("Connection refused");
                throw new GitException("git " + String.join(" ", args) + ": " + message, retryable);
            }
            return new Capped(head.toByteArray(), total);
        } catch (IOException e) {
            throw new GitException("git could not be started (is it installed?): " + e.getMessage(), false);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GitException("interrupted while running git " + args[0], true);
        }
    }
}
