package dev.kage.e2e.chaos;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * autocannon (the HTTP load tool from the npm registry) driven at a steady overall rate by
 * {@code ops/chaos/steady-load.cjs} (one connection per lane, the lanes' starts spread over a second), its JSON summary
 * read back. Where it is: {@code kage.chaos.autocannon} / {@code KAGE_CHAOS_AUTOCANNON} (its executable), else
 * {@code ~/.cache/kage/autocannon/node_modules/.bin/autocannon} where {@code ops/chaos/run.sh} and
 * {@code ops/test.sh} install the pinned version. Thread-safe (no state).
 */
final class Autocannon {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The steady-rate driver, from the e2e module's directory (where Failsafe runs). */
    static final Path STEADY_LOAD = Path.of("..", "ops", "chaos", "steady-load.cjs").toAbsolutePath().normalize();

    private Autocannon() {
    }

    /** The executable, or null when autocannon is not installed. */
    static Path find() {
        String set = System.getProperty("kage.chaos.autocannon", System.getenv("KAGE_CHAOS_AUTOCANNON"));
        Path path = set != null && !set.isBlank() ? Path.of(set)
                : Path.of(System.getProperty("user.home"), ".cache/kage/autocannon/node_modules/.bin/autocannon");
        return Files.isExecutable(path) ? path : null;
    }

    /**
     * One run: {@code rate × seconds} requests at {@code rate} per second over {@code connections} lanes (at most
     * {@code rate}). A number of
     * requests rather than a duration, so none is cut off at the end and every answer is counted.
     *
     * @param out where its JSON summary is written (kept for the record)
     */
    static Result run(Path autocannon, String url, String apiKey, String body, int rate, int seconds, int connections, Path out)
            throws IOException, InterruptedException {
        return run(autocannon, url, apiKey, body, rate, seconds, connections, 10, out);
    }

    /** {@link #run} with a request timeout of {@code timeoutSeconds} (a request not answered by then is an error). */
    static Result run(Path autocannon, String url, String apiKey, String body, int rate, int seconds, int connections,
                      int timeoutSeconds, Path out) throws IOException, InterruptedException {
        // Not autocannon's own -R (every connection spends its second's requests at once, at the same moment: a burst
        // per second whose wait is most of what it measures) but ops/chaos/steady-load.cjs: the same client, one
        // connection per lane, the lanes' seconds spread evenly, so requests arrive at a steady rate.
        Path module = autocannon.toRealPath().getParent();
        List<String> argv = new ArrayList<>(List.of("node", STEADY_LOAD.toString(), module.toString(), url, apiKey, body,
                Integer.toString(rate), Integer.toString(seconds), Integer.toString(connections), Integer.toString(timeoutSeconds)));
        Process process = new ProcessBuilder(argv).redirectOutput(out.toFile())
                .redirectError(out.resolveSibling(out.getFileName() + ".err").toFile()).start();
        if (!process.waitFor(seconds * 3L + 60, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new IllegalStateException("autocannon did not end within " + (seconds * 3 + 60) + " s");
        }
        if (process.exitValue() != 0) {
            throw new IllegalStateException("autocannon exited " + process.exitValue() + ": "
                    + Files.readString(out.resolveSibling(out.getFileName() + ".err")));
        }
        JsonNode json = JSON.readTree(Files.readString(out));
        JsonNode latency = json.path("latency");
        long twoXx = json.path("2xx").asLong();
        return new Result(rate, seconds, json.path("requests").path("total").asLong(), twoXx, json.path("non2xx").asLong(),
                json.path("errors").asLong(), json.path("timeouts").asLong(), latency.path("p50").asDouble(),
                latency.path("p99").asDouble(), latency.path("max").asDouble(), json.path("duration").asDouble(),
                json.path("lanes").asInt(connections));
    }

    /**
     * A run's figures (latency in ms, from the request's first byte sent to its answer, as autocannon measures it;
     * exact percentiles of every answer).
     *
     * @param total    requests answered or failed
     * @param errors   socket errors (refused, reset, timed out: autocannon counts timeouts among them too)
     * @param duration seconds the run took
     * @param lanes    connections used, one per lane (at least {@code rate / 5}: see steady-load.cjs)
     */
    record Result(int rate, int seconds, long total, long twoXx, long non2xx, long errors, long timeouts, double p50,
                  double p99, double max, double duration, int lanes) {
        /** Non-2xx answers and socket errors. */
        long failures() {
            return non2xx + errors;
        }

        /** Requests per second achieved. */
        double achieved() {
            return duration > 0 ? total / duration : 0;
        }
    }
}
