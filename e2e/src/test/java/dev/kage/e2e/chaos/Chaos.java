package dev.kage.e2e.chaos;

import dev.kage.e2e.Fleet;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What the chaos scenarios share: their scale, where their one-line results go, the fixture agents and a
 * git repository for the workers to clone.
 *
 * <p>Scale: system property {@code kage.chaos.scale} or environment variable {@code KAGE_CHAOS_SCALE},
 * {@code ci} (the default, what {@code ./mvnw verify} and {@code ops/test.sh} run) or {@code full} (what
 * {@code ops/chaos/run.sh} runs). A single figure can be overridden with {@code kage.chaos.<name>} /
 * {@code KAGE_CHAOS_<NAME>} (e.g. {@code KAGE_CHAOS_JOBS=400}). Results: each scenario prints one line
 * starting with {@code CHAOS } and writes it to {@code <kage.chaos.results>/<scenario>.txt}
 * (default {@code target/chaos}), where {@code ops/chaos/run.sh} collects it. Thread-safe (no state).
 */
public final class Chaos {
    /** The fixture agent that logs each run's start and end and writes OVERLAP when a job runs twice at once. */
    public static final Path RECORD_RUN = Fleet.ROOT.resolve("e2e/src/test/resources/fixtures/record-run.sh");
    /** The fixture agent that writes the prompt it was given, byte for byte, to a file. */
    public static final Path ECHO_PROMPT = Fleet.ROOT.resolve("e2e/src/test/resources/fixtures/echo-prompt.sh");

    private Chaos() {
    }

    /** {@code ci} or {@code full}. */
    public static String scale() {
        String scale = setting("scale");
        if (scale == null || scale.isBlank()) {
            return "ci";
        }
        scale = scale.trim().toLowerCase(Locale.ROOT);
        if (!scale.equals("ci") && !scale.equals("full")) {
            throw new IllegalArgumentException("KAGE_CHAOS_SCALE=" + scale + ": must be ci or full (default ci)");
        }
        return scale;
    }

    /**
     * Whether the long scenarios (Redis restarts, the 429 storm: minutes each) were asked for: system property
     * {@code kage.chaos.long} or {@code KAGE_CHAOS_LONG} = {@code true}, which {@code ops/chaos/run.sh} sets when it runs
     * them. {@code ./mvnw verify} (and so CI) skips them: it runs the quick scenarios only (1, 3, 5 and a short 6).
     */
    public static boolean longAsked() {
        return "true".equals(System.getProperty("kage.chaos.long", System.getenv("KAGE_CHAOS_LONG")));
    }

    public static boolean full() {
        return scale().equals("full");
    }

    /** A whole-number figure: its override when set, else the value for the scale. */
    public static int intSetting(String name, int ci, int full) {
        String value = setting(name);
        if (value == null || value.isBlank()) {
            return full() ? full : ci;
        }
        try {
            int parsed = Integer.parseInt(value.trim());
            if (parsed < 1) {
                throw new NumberFormatException();
            }
            return parsed;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("KAGE_CHAOS_" + name.toUpperCase(Locale.ROOT) + "=" + value
                    + ": must be a positive whole number (default " + ci + " at scale ci, " + full + " at scale full)");
        }
    }

    private static String setting(String name) {
        String property = System.getProperty("kage.chaos." + name);
        return property != null ? property : System.getenv("KAGE_CHAOS_" + name.toUpperCase(Locale.ROOT));
    }

    /** Prints {@code CHAOS <scenario> <summary> PASS|FAIL} and writes it to the results folder; returns the line. */
    public static String report(String scenario, String summary, boolean pass) throws IOException {
        String line = "CHAOS " + scenario + " scale=" + scale() + " " + summary + " " + (pass ? "PASS" : "FAIL");
        System.out.println(line);
        Path results = Files.createDirectories(resultsDir());
        Files.writeString(results.resolve(scenario + ".txt"), line + "\n");
        return line;
    }

    /** Writes details (e.g. the names of failed cases) beside the result line, as {@code <scenario>-details.txt}. */
    public static void details(String scenario, List<String> lines) throws IOException {
        Path results = Files.createDirectories(resultsDir());
        Files.write(results.resolve(scenario + "-details.txt"), lines, StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING);
    }

    static Path resultsDir() {
        return Path.of(System.getProperty("kage.chaos.results", "target/chaos"));
    }

    /**
     * An agents file with {@code names} served by the {@code record-run.sh} fixture (exit 75 is retried, up to 3 attempts).
     */
    public static Path recordingAgents(Path file, String... names) throws IOException {
        StringBuilder yaml = new StringBuilder("agents:\n");
        for (String name : names) {
            yaml.append("  ").append(name).append(":\n")
                    .append("    argv: [\"/bin/bash\", \"").append(RECORD_RUN).append("\", \"{task_id}/{agent}\", \"{prompt}\"]\n")
                    .append("    output: claude-json\n")
                    .append("    env: [E2E_LOG_DIR]\n")
                    .append("    retry: {max_attempts: 3, exit_codes: [75]}\n");
        }
        Files.writeString(file, yaml);
        return file;
    }

    /** An agents file with {@code names} served by the {@code echo-prompt.sh} fixture. */
    public static Path echoAgents(Path file, String... names) throws IOException {
        StringBuilder yaml = new StringBuilder("agents:\n");
        for (String name : names) {
            yaml.append("  ").append(name).append(":\n")
                    .append("    argv: [\"/bin/bash\", \"").append(ECHO_PROMPT).append("\", \"{task_id}-{agent}\", \"{prompt}\"]\n")
                    .append("    output: claude-json\n")
                    .append("    env: [E2E_LOG_DIR]\n");
        }
        Files.writeString(file, yaml);
        return file;
    }

    /** A git repository with one commit on {@code main}. */
    public static Path createRepo(Path path) throws IOException, InterruptedException {
        Files.createDirectories(path);
        git(path, "init", "--quiet", "-b", "main");
        Files.writeString(path.resolve("README.md"), "# chaos\n");
        git(path, "add", "README.md");
        git(path, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "init");
        return path;
    }

    private static void git(Path cwd, String... args) throws IOException, InterruptedException {
        List<String> argv = new ArrayList<>(List.of("git"));
        argv.addAll(List.of(args));
        Process process = new ProcessBuilder(argv).directory(cwd.toFile()).redirectErrorStream(true).start();
        String out = new String(process.getInputStream().readAllBytes());
        if (process.waitFor() != 0) {
            throw new IllegalStateException("git " + String.join(" ", args) + ": " + out);
        }
    }

    /** The lines of a fixture's run log that start with {@code prefix} ({@code "start "}, {@code "end "}, {@code "OVERLAP "}). */
    public static List<String> runLines(Path runsLog, String prefix) throws IOException {
        if (!Files.exists(runsLog)) {
            return List.of();
        }
        return Files.readAllLines(runsLog).stream().filter(l -> l.startsWith(prefix)).toList();
    }

    /**
     * Every sign in a fixture's run log that a job ran twice at once: the fixture's own {@code OVERLAP} lines (a run
     * that could not take its job's lock), and any two runs of one job by different processes whose recorded
     * [start, end] times intersect (a run with no end line, killed, counts from its start to its start).
     */
    public static List<String> overlaps(Path runsLog) throws IOException {
        List<String> found = new java.util.ArrayList<>(runLines(runsLog, "OVERLAP "));
        record Run(String job, String pid, long start, long end) {
        }
        // A run is a start line and the end (or fail) line of the same pid after it; a pid the system used again later
        // starts a new run.
        List<Run> all = new java.util.ArrayList<>();
        java.util.Map<String, Integer> open = new java.util.HashMap<>();
        for (String line : runLines(runsLog, "")) {
            String[] f = line.split(" ");
            if (f.length != 4 || !f[3].matches("\\d+")) {
                continue;
            }
            long at = Long.parseLong(f[3]);
            switch (f[0]) {
                case "start" -> {
                    open.put(f[2], all.size());
                    all.add(new Run(f[1], f[2], at, at));
                }
                case "end", "fail" -> {
                    Integer index = open.remove(f[2]);
                    if (index != null) {
                        Run run = all.get(index);
                        all.set(index, new Run(run.job(), run.pid(), run.start(), at));
                    }
                }
                default -> { }
            }
        }
        java.util.Map<String, List<Run>> byJob = all.stream().collect(java.util.stream.Collectors.groupingBy(Run::job));
        for (List<Run> runs : byJob.values()) {
            for (int i = 0; i < runs.size(); i++) {
                for (int j = i + 1; j < runs.size(); j++) {
                    Run a = runs.get(i);
                    Run b = runs.get(j);
                    if (a.start() < b.end() && b.start() < a.end()) {
                        found.add("runs of " + a.job() + " by pids " + a.pid() + " [" + a.start() + ", " + a.end() + "] and "
                                + b.pid() + " [" + b.start() + ", " + b.end() + "] intersect");
                    }
                }
            }
        }
        return found;
    }
}
