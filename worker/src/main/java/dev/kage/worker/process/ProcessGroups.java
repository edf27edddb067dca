package dev.kage.worker.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Signals a process group and tells whether it still has members, from {@code /proc} and {@code /bin/kill} (Java
 * signals single processes only). Linux only; elsewhere {@link #alive} is false and nothing is signalled.
 * Stateless and thread-safe.
 *
 * <p>A group id is the pid of its leader. The kernel does not hand out a pid that is still some group's id, so while
 * a member lives, the id names this group and no other; {@link #alive} is asked right before each signal.
 */
final class ProcessGroups {
    private static final Path PROC = Path.of("/proc");
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(ProcessGroups.class);

    private ProcessGroups() {
    }

    /** True while a process (not a zombie) of group {@code pgid} exists. */
    static boolean alive(long pgid) {
        try (DirectoryStream<Path> pids = Files.newDirectoryStream(PROC, p -> isPid(p.getFileName().toString()))) {
            for (Path pid : pids) {
                if (inGroup(pid, pgid)) {
                    return true;
                }
            }
        } catch (IOException e) {
            return false;
        }
        return false;
    }

    /** SIGTERM to the group; SIGKILL to what is left of it after {@code grace} (polled every 20 ms). */
    static void kill(long pgid, Duration grace) {
        signal(pgid, "TERM");
        long deadline = System.nanoTime() + grace.toNanos();
        while (alive(pgid)) {
            if (System.nanoTime() - deadline >= 0) {
                signal(pgid, "KILL");
                return;
            }
            try {
                // Sleeping is right here: nothing announces a group's end (its members are not our children).
                TimeUnit.MILLISECONDS.sleep(20);
            } catch (InterruptedException e) {
                signal(pgid, "KILL");
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** Sends {@code signal} (a name such as {@code TERM}) to every member of group {@code pgid}, if it has any. */
    static void signal(long pgid, String signal) {
        if (pgid <= 1 || !alive(pgid)) {
            return;
        }
        try {
            Process kill = new ProcessBuilder("/bin/kill", "-s", signal, "--", "-" + pgid)
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!kill.waitFor(5, TimeUnit.SECONDS)) {
                kill.destroyForcibly();
            }
        } catch (IOException e) {
            LOG.warn("Could not signal process group {}: {}", pgid, e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static boolean inGroup(Path pid, long pgid) {
        try {
            String stat = Files.readString(pid.resolve("stat"), StandardCharsets.US_ASCII);
            // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so read after the last ')'.
            String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ", 4);
            return !fields[0].equals("Z") && Long.parseLong(fields[2]) == pgid;
        } catch (IOException | RuntimeException gone) {
            return false; // exited meanwhile, or not readable
        }
    }

    private static boolean isPid(String name) {
        if (name.isEmpty()) {
            return false;
        }
        for (int i = 0; i < name.length(); i++) {
            if (!Character.isDigit(name.charAt(i))) {
                return false;
            }
        }
        return true;
    }
}
