package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Start lanes ({@code KAGE_START_LANES}): a worker claims a job that starts a process only when a lane is free, and the
 * lane is free again once the job's agent runs. Proven from the worker's own log: each job's line "agent started N ms
 * after its claim" gives the interval from its claim to its start; with one lane no two intervals overlap, with as many
 * lanes as slots they do (the jobs of one read are claimed together) — the control that shows the check can fail.
 */
class StartLanesIT {
    private static final Pattern STARTED = Pattern.compile(
            "^(\\d\\d:\\d\\d:\\d\\d\\.\\d{3}) .*Job (\\S+) agent started ([0-9.]+) ms after its claim", Pattern.MULTILINE);
    private static final int JOBS = 12;

    @TempDir
    Path dir;

    @Test
    void withOneLaneAJobIsClaimedOnlyAfterThePreviousOneStarted() throws Exception {
        Path origin = FleetIT.createRepo(dir.resolve("origin"));
        try (Fleet fleet = new Fleet(Path.of("target", "e2e-logs", "start-lanes"))) {
            fleet.startCoordinator(Map.of());
            fleet.awaitHealthy();

            fleet.submitBatch("dev-key-12345", "demo", JOBS, origin, i -> "one lane " + i);
            Process one = fleet.startWorker("lanes-one", dir.resolve("work-one"), origin,
                    Map.of("MAX_PARALLEL_CLIS", "4", "KAGE_START_LANES", "1", "KAGE_WORKER_AGENTS", "demo"));
            awaitResults(fleet, JOBS);
            one.destroy();
            assertThat(one.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)).as("the one-lane worker stops").isTrue();
            List<long[]> oneLane = intervals(fleet.log("lanes-one"));
            assertThat(oneLane).hasSize(JOBS);
            // Log times have millisecond resolution: 2 ms of apparent overlap are rounding, not two jobs starting.
            assertThat(maxOverlapping(oneLane, 2_000)).as("jobs between claim and start at once, one lane").isEqualTo(1);

            fleet.submitBatch("dev-key-12345", "demo", JOBS, origin, i -> "four lanes " + i);
            fleet.startWorker("lanes-four", dir.resolve("work-four"), origin,
                    Map.of("MAX_PARALLEL_CLIS", "4", "KAGE_START_LANES", "4", "KAGE_WORKER_AGENTS", "demo"));
            awaitResults(fleet, 2 * JOBS);
            List<long[]> four = intervals(fleet.log("lanes-four"));
            assertThat(four).hasSize(JOBS);
            assertThat(maxOverlapping(four, 2_000)).as("jobs between claim and start at once, four lanes").isGreaterThan(1);
        }
    }

    private static void awaitResults(Fleet fleet, int count) {
        await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500))
                .until(() -> fleet.count("SELECT count(*) FROM execution_results WHERE status = 'completed'") >= count);
    }

    /** Each job's [claim, start] in µs of the day, from its log line (start = the line's time, claim = start - N ms). */
    private static List<long[]> intervals(String log) {
        List<long[]> intervals = new ArrayList<>();
        Matcher m = STARTED.matcher(log);
        while (m.find()) {
            long start = LocalTime.parse(m.group(1)).toNanoOfDay() / 1_000;
            long claim = start - Math.round(Double.parseDouble(m.group(3)) * 1_000);
            intervals.add(new long[] {claim, start});
        }
        return intervals;
    }

    /** The most intervals open at once: each interval with those still open {@code toleranceMicros} before its end. */
    private static int maxOverlapping(List<long[]> intervals, long toleranceMicros) {
        int max = 0;
        for (long[] a : intervals) {
            int overlapping = 1;
            long moment = a[1] - toleranceMicros;
            for (long[] b : intervals) {
                if (b != a && b[0] <= moment && b[1] >= moment) {
                    overlapping++;
                }
            }
            max = Math.max(max, overlapping);
        }
        return max;
    }
}
