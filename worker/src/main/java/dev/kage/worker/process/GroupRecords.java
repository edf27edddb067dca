package dev.kage.worker.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;

/**
 * The agents' process groups a worker has running, one file per group in a folder of its work dir, so the next
 * incarnation of the same worker (same work dir) can kill what a {@code kill -9} left. The agent's leader dies with the
 * worker ({@code setpriv --pdeathsig}), but the processes it started stay in its group and would keep running, and
 * writing into a worktree the next incarnation clears. Linux only. Thread-safe (one file per group).
 *
 * <p>A record is {@code <boot id> <leader's start time>} (the kernel's, in clock ticks since boot, from
 * {@code /proc/<pid>/stat}) in a file named by the group's id (its leader's pid). At start-up a group is ours, and
 * killed, when the machine has not rebooted since and either its leader still lives with the recorded start time, or the
 * leader is gone and members of the group, owned by this user and started no earlier than the leader, remain: the
 * kernel gives out no pid that is still some group's id, so while our group has members no other group can have its
 * id. (Left unsettled: our group emptied, its id was reused by an unrelated process of the same user that led a group
 * of its own and exited, leaving members, all between the crash and the restart.)
 */
final class GroupRecords {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(GroupRecords.class);
    private static final Path PROC = Path.of("/proc");

    private final Path dir;

    GroupRecords(Path dir) {
        this.dir = dir;
    }

    /** Records group {@code pgid} as running; false when it cannot be recorded (logged). */
    boolean record(long pgid) {
        OptionalLong started = startTime(pgid);
        String boot = bootId();
        if (started.isEmpty() || boot == null) {
            return false;
        }
        try {
            Files.createDirectories(dir);
            Path file = dir.resolve(Long.toString(pgid));
            Path partial = dir.resolve(pgid + ".partial");
            Files.writeString(partial, boot + " " + started.getAsLong() + "\n", StandardCharsets.US_ASCII);
            Files.move(partial, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                    java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            return true;
        } catch (IOException e) {
            LOG.warn("Cannot record agent process group {} in {}: {}", pgid, dir, e.getMessage());
            return false;
        }
    }

    /** The group has ended (or was killed): its record goes. */
    void forget(long pgid) {
        try {
            Files.deleteIfExists(dir.resolve(Long.toString(pgid)));
        } catch (IOException e) {
            LOG.warn("Cannot remove the record of agent process group {}: {}", pgid, e.getMessage());
        }
    }

    /**
     * Kills (SIGTERM, SIGKILL after {@code grace}) every recorded group that is still ours and forgets every record.
     * Call before this worker starts any agent.
     *
     * @return groups killed
     */
    int killLeftovers(Duration grace) {
        if (!Files.isDirectory(dir)) {
            return 0;
        }
        List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
            entries.forEach(files::add);
        } catch (IOException e) {
            LOG.warn("Cannot list {}: {}", dir, e.getMessage());
            return 0;
        }
        String boot = bootId();
        int killed = 0;
        for (Path file : files) {
            String name = file.getFileName().toString();
            try {
                if (name.chars().allMatch(Character::isDigit) && !name.isEmpty()) {
                    long pgid = Long.parseLong(name);
                    String[] fields = Files.readString(file, StandardCharsets.US_ASCII).trim().split(" ");
                    if (fields.length == 2 && fields[0].equals(boot) && ours(pgid, Long.parseLong(fields[1]))) {
                        LOG.warn("Killing process group {}: an agent's processes left running by a worker that was "
                                + "killed without a shutdown (recorded in {})", pgid, dir);
                        ProcessGroups.kill(pgid, grace);
                        killed++;
                    }
                }
                Files.deleteIfExists(file);
            } catch (IOException | RuntimeException e) {
                LOG.warn("Cannot read or remove {}: {}", file, e.getMessage());
            }
        }
        return killed;
    }

    /** Whether group {@code pgid}, whose leader started at {@code leaderStart}, is still the group recorded. */
    private static boolean ours(long pgid, long leaderStart) {
        OptionalLong leader = startTime(pgid);
        if (leader.isPresent()) {
            // The pid lives: the recorded leader itself, or a process that got the pid after our group had ended.
            return leader.getAsLong() == leaderStart;
        }
        Object uid = myUid();
        boolean any = false;
        try (DirectoryStream<Path> pids = Files.newDirectoryStream(PROC, p -> p.getFileName().toString().chars()
                .allMatch(Character::isDigit))) {
            for (Path pid : pids) {
                long[] stat = stat(pid);
                if (stat == null || stat[0] != pgid) {
                    continue;
                }
                if (stat[1] < leaderStart || uid == null || !uid.equals(Files.getAttribute(pid, "unix:uid"))) {
                    return false; // a member that cannot be one of ours: not our group
                }
                any = true;
            }
        } catch (IOException | RuntimeException e) {
            return false;
        }
        return any;
    }

    private static Object myUid() {
        try {
            return Files.getAttribute(PROC.resolve("self"), "unix:uid");
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** The process's start time (clock ticks since boot), empty when it does not exist or is a zombie. */
    static OptionalLong startTime(long pid) {
        long[] stat = stat(PROC.resolve(Long.toString(pid)));
        return stat == null ? OptionalLong.empty() : OptionalLong.of(stat[1]);
    }

    /** {pgrp, starttime} of a live (not zombie) process, or null. */
    private static long[] stat(Path pid) {
        try {
            String stat = Files.readString(pid.resolve("stat"), StandardCharsets.US_ASCII);
            // pid (comm) state ppid pgrp ... starttime (field 22): comm may hold spaces and parentheses.
            String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            if (fields[0].equals("Z")) {
                return null;
            }
            return new long[] {Long.parseLong(fields[2]), Long.parseLong(fields[19])};
        } catch (IOException | RuntimeException gone) {
            return null;
        }
    }

    private static String bootId() {
        try {
            return Files.readString(Path.of("/proc/sys/kernel/random/boot_id"), StandardCharsets.US_ASCII).trim();
        } catch (IOException e) {
            return null;
        }
    }
}
