// The Java half of ops/bench/ratelimit.sh: one process of a limiter side, the analyzer and the cleanup.
//
// Compiled against (a copy of) the worker's shaded jar, which holds Redisson and Lettuce, and run on it:
//   java -cp kage-worker.jar ops/bench/RateLimitBench.java <mode> ...        (single-file source launch)
// ratelimit.sh compiles it once with javac instead and runs the class: four source launches at once
// compile four times, which took 8-20 s on a 2-CPU machine. Not part of any production jar. Modes:
//
//   redisson URL KEY LIMIT WINDOW_MS THREADS START_MS END_MS OUT
//       a Redisson client with an RRateLimiter at KEY, trySetRate(OVERALL, LIMIT, WINDOW_MS) (the first
//       of the processes to call it sets the rate, the key being fresh), THREADS threads that from
//       START_MS (epoch ms) until END_MS loop limiter.acquire(1).
//   kage URL NAMESPACE GROUP LIMIT WINDOW_MS THREADS START_MS END_MS OUT
//       the same with Kage's dev.kage.ratelimit.FleetRateLimiter: connect(URL, NAMESPACE),
//       configure(GROUP, new Limit(LIMIT, WINDOW_MS, 0, guard)), guard = BENCH_KAGE_GUARD_MS or
//       Limit.defaultGuard, each thread loops acquire(GROUP, Priority.NORMAL, 0, sendLease=true), records
//       the grant time and calls markSent (the fleet's path: a worker's permit counts from its call).
//       Called through reflection, so the other modes compile and run while that class is missing.
//   analyze NAME LIMIT WINDOW_MS START_MS END_MS FILE...
//       merges the files of one limiter and prints detail lines and the RESULT line (below).
//   cleanup URL PATTERN
//       SCAN MATCH PATTERN + UNLINK (never FLUSH*); prints how many keys it removed.
//
// A side's process writes OUT when END_MS is reached: one line per grant, "<grant epoch µs> <acquire
// latency µs>" (latency from calling acquire to its return, grant time taken right after the return).
// Before START_MS each thread warms up with 3 acquires on a limiter of the same kind that never limits
// (key KEY-warm-<pid>, group GROUP-warm-<pid>), so class loading, scripts and connections are ready;
// then the process prints "ready", or fails if that is after START_MS, so start-up never falls inside
// the measured run. Acquires still blocked at END_MS are dropped.
//
// The analyzer keeps the grants in [START_MS, END_MS) and prints
//   RESULT limiter=NAME grants=N max_in_window=N ratio=R utilisation=P p50_ms=X p99_ms=X
// max_in_window: the most grants in any half-open window [t, t + WINDOW_MS) (two pointers over the
// sorted times); ratio: max_in_window / LIMIT; utilisation: the grants in [START_MS + WINDOW_MS,
// END_MS) / (LIMIT x those windows), in percent; p50/p99 of the acquire latencies of the kept grants.

import io.lettuce.core.KeyScanCursor;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanCursor;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.io.BufferedWriter;
import java.io.IOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.redisson.Redisson;
import org.redisson.api.RRateLimiter;
import org.redisson.api.RateLimiterConfig;
import org.redisson.api.RateType;
import org.redisson.api.RedissonClient;
import org.redisson.config.Config;

public class RateLimitBench {
    /** Acquires per thread on a separate, never-limiting limiter before the start. */
    static final int WARM_UP = 3;
    /** The warm-up limiter's limit per window: never reached by THREADS x WARM_UP acquires. */
    static final long WARM_LIMIT = 10_000;

    /**
     * One blocking acquire of one permit; {@link #sent} is told once the grant is recorded (the caller's
     * "call"), for limiters that count a permit from when its call leaves.
     */
    interface Permit {
        Object acquire() throws Exception;

        default void sent(Object grant) throws Exception {
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            usage();
        }
        switch (args[0]) {
            case "redisson" -> redisson(Arrays.copyOfRange(args, 1, args.length));
            case "kage" -> kage(Arrays.copyOfRange(args, 1, args.length));
            case "analyze" -> analyze(Arrays.copyOfRange(args, 1, args.length));
            case "cleanup" -> cleanup(Arrays.copyOfRange(args, 1, args.length));
            default -> usage();
        }
    }

    static void usage() {
        System.err.println("usage: RateLimitBench.java redisson|kage|analyze|cleanup ... (see the header of this file)");
        System.exit(2);
    }

    // ------------------------------------------------------------------ sides

    @SuppressWarnings("deprecation") // RedisURI.getUsername/getPassword, as in KageFactory
    static void redisson(String[] a) throws Exception {
        if (a.length != 8) {
            usage();
        }
        String url = a[0];
        String key = a[1];
        long limit = Long.parseLong(a[2]);
        Duration window = Duration.ofMillis(Long.parseLong(a[3]));
        int threads = Integer.parseInt(a[4]);
        RedisURI uri = RedisURI.create(url);
        Config config = new Config();
        var server = config.useSingleServer()
                .setAddress((uri.isSsl() ? "rediss://" : "redis://") + uri.getHost() + ":" + uri.getPort())
                .setDatabase(uri.getDatabase())
                .setConnectionMinimumIdleSize(threads)
                .setConnectionPoolSize(threads);
        if (uri.getUsername() != null) {
            server.setUsername(uri.getUsername());
        }
        if (uri.getPassword() != null) {
            server.setPassword(new String(uri.getPassword()));
        }
        RedissonClient client = Redisson.create(config);
        RRateLimiter limiter = client.getRateLimiter(key);
        limiter.trySetRate(RateType.OVERALL, limit, window);
        RateLimiterConfig stored = limiter.getConfig();
        if (stored.getRate() != limit || stored.getRateInterval() != window.toMillis()) {
            throw new IllegalStateException("rate limiter " + key + " holds " + stored.getRate() + " per "
                    + stored.getRateInterval() + " ms, not " + limit + " per " + window.toMillis() + " ms");
        }
        RRateLimiter warm = client.getRateLimiter(key + "-warm-" + ProcessHandle.current().pid());
        warm.trySetRate(RateType.OVERALL, WARM_LIMIT, window);
        drive(() -> {
            limiter.acquire(1);
            return null;
        }, () -> {
            warm.acquire(1);
            return null;
        }, threads, Long.parseLong(a[5]), Long.parseLong(a[6]),
                Path.of(a[7]));
    }

    static void kage(String[] a) throws Exception {
        if (a.length != 9) {
            usage();
        }
        String url = a[0];
        String namespace = a[1];
        String group = a[2];
        long limit = Long.parseLong(a[3]);
        Duration window = Duration.ofMillis(Long.parseLong(a[4]));
        int threads = Integer.parseInt(a[5]);
        Class<?> type;
        Class<?> priorityType;
        try {
            type = Class.forName("dev.kage.ratelimit.FleetRateLimiter");
            priorityType = Class.forName("dev.kage.task.Priority");
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException("the worker jar has no " + e.getMessage()
                    + " (rebuild it, or run BENCH_LIMITERS=redisson,bullmq)", e);
        }
        Object normal = Arrays.stream(priorityType.getEnumConstants())
                .filter(p -> ((Enum<?>) p).name().equals("NORMAL")).findFirst().orElseThrow();
        Method connect = type.getMethod("connect", String.class, String.class);
        // The fleet's path: a leased permit, stamped by markSent when the caller acts on it (here: right after
        // recording its grant time), so the permit counts from the moment the caller's "call" happens.
        Method acquire = type.getMethod("acquire", String.class, priorityType, long.class, boolean.class);
        Class<?> grantType = Class.forName("dev.kage.ratelimit.FleetRateLimiter$Grant");
        Class<?> decisionType = Class.forName("dev.kage.ratelimit.FleetRateLimiter$Decision");
        Method markSent = type.getMethod("markSent", String.class, String.class, decisionType);
        Method callerId = grantType.getMethod("callerId");
        Method decision = grantType.getMethod("decision");
        Object limiter = invoke(connect, null, url, namespace);
        Configure configure = kageConfigure(type);
        configure.apply(limiter, group, limit, window);
        String warmGroup = group + "-warm-" + ProcessHandle.current().pid();
        configure.apply(limiter, warmGroup, WARM_LIMIT, window);
        Permit measured = new Permit() {
            public Object acquire() throws Exception {
                return invoke(acquire, limiter, group, normal, 0L, true);
            }

            public void sent(Object grant) throws Exception {
                invoke(markSent, limiter, group, invoke(callerId, grant), invoke(decision, grant));
            }
        };
        Permit warmUp = new Permit() {
            public Object acquire() throws Exception {
                return invoke(acquire, limiter, warmGroup, normal, 0L, true);
            }

            public void sent(Object grant) throws Exception {
                invoke(markSent, limiter, warmGroup, invoke(callerId, grant), invoke(decision, grant));
            }
        };
        drive(measured, warmUp,
                threads, Long.parseLong(a[6]), Long.parseLong(a[7]), Path.of(a[8]));
    }

    interface Configure {
        void apply(Object limiter, String group, long limit, Duration window) throws Exception;
    }

    /**
     * FleetRateLimiter's {@code configure(group, new Limit(limit, window, 0, guard))}, with the guard from
     * BENCH_KAGE_GUARD_MS (milliseconds) or, when unset, {@code Limit.defaultGuard(window)}, the product's
     * default (25 ms for a 1 s window).
     */
    static Configure kageConfigure(Class<?> type) throws Exception {
        Class<?> limitType = Class.forName("dev.kage.ratelimit.Limit");
        Method configure = type.getMethod("configure", String.class, limitType);
        var constructor = limitType.getConstructor(long.class, Duration.class, long.class, Duration.class);
        Method defaultGuard = limitType.getMethod("defaultGuard", Duration.class);
        String guardMs = System.getenv("BENCH_KAGE_GUARD_MS");
        return (limiter, group, limit, window) -> {
            Duration guard = guardMs == null || guardMs.isBlank()
                    ? (Duration) invoke(defaultGuard, null, window) : Duration.ofMillis(Long.parseLong(guardMs));
            Object value;
            try {
                value = constructor.newInstance(limit, window, 0L, guard);
            } catch (InvocationTargetException ex) {
                throw ex.getCause() instanceof Exception cause ? cause : ex;
            }
            invoke(configure, limiter, group, value);
            if (limit != WARM_LIMIT) {
                System.out.println("kage: configure(" + group + ", " + value + ")");
            }
        };
    }

    static Object invoke(Method method, Object target, Object... args) throws Exception {
        try {
            return method.invoke(target, args);
        } catch (InvocationTargetException e) {
            if (e.getCause() instanceof Exception cause) {
                throw cause;
            }
            throw e;
        }
    }

    /**
     * Warms each thread up with {@link #WARM_UP} acquires on {@code warm} (a limiter of the same kind
     * with a limit never reached, so the code paths, scripts and connections are ready), starts the
     * threads at {@code startMs}, lets them loop until {@code endMs}, writes what they recorded and
     * ends the process (a thread may still be blocked in an acquire).
     */
    static void drive(Permit permit, Permit warm, int threads, long startMs, long endMs, Path out) throws Exception {
        CountDownLatch warmedUp = new CountDownLatch(threads);
        long endUs = endMs * 1000;
        Object lock = new Object();
        List<long[]> records = new ArrayList<>();
        List<Throwable> failures = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            Thread thread = new Thread(() -> {
                try {
                    for (int n = 0; n < WARM_UP; n++) {
                        warm.sent(warm.acquire());
                    }
                    warmedUp.countDown();
                    sleepUntil(startMs);
                    while (true) {
                        long t0 = System.nanoTime();
                        Object grant = permit.acquire();
                        long latencyUs = (System.nanoTime() - t0) / 1_000;
                        long grantUs = epochMicros();
                        permit.sent(grant);
                        if (grantUs >= endUs) {
                            return;
                        }
                        synchronized (lock) {
                            records.add(new long[] {grantUs, latencyUs});
                        }
                    }
                } catch (Throwable e) {
                    synchronized (lock) {
                        failures.add(e);
                    }
                }
            }, "bench-" + i);
            thread.setDaemon(true);
            thread.start();
        }
        while (!warmedUp.await(100, TimeUnit.MILLISECONDS)) {
            synchronized (lock) {
                if (!failures.isEmpty()) {
                    System.err.println("the warm-up failed:");
                    failures.get(0).printStackTrace();
                    System.exit(1);
                }
            }
        }
        long late = System.currentTimeMillis() - startMs;
        if (late >= 0) {
            System.err.println("not ready before the start time (" + late + " ms late): raise BENCH_LEAD_SECONDS");
            System.exit(3);
        }
        System.out.println("ready, " + (-late) + " ms before the start");
        sleepUntil(endMs);
        List<long[]> snapshot;
        List<Throwable> failed;
        synchronized (lock) {
            snapshot = new ArrayList<>(records);
            failed = new ArrayList<>(failures);
        }
        try (BufferedWriter w = Files.newBufferedWriter(out)) {
            for (long[] r : snapshot) {
                w.write(r[0] + " " + r[1] + "\n");
            }
        }
        System.out.println("wrote " + snapshot.size() + " grants to " + out);
        if (!failed.isEmpty()) {
            System.err.println(failed.size() + " thread(s) failed; the first:");
            failed.get(0).printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static long epochMicros() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000 + now.getNano() / 1_000;
    }

    /** Waits for the shared start instant: every process of a run starts its threads then, not when ready. */
    static void sleepUntil(long epochMs) throws InterruptedException {
        long left;
        while ((left = epochMs - System.currentTimeMillis()) > 0) {
            Thread.sleep(left);
        }
    }

    // ------------------------------------------------------------------ analyzer

    static void analyze(String[] a) throws IOException {
        if (a.length < 6) {
            usage();
        }
        String name = a[0];
        long limit = Long.parseLong(a[1]);
        long windowUs = Long.parseLong(a[2]) * 1_000;
        long startUs = Long.parseLong(a[3]) * 1_000;
        long endUs = Long.parseLong(a[4]) * 1_000;
        List<Long> times = new ArrayList<>();
        List<Long> latencies = new ArrayList<>();
        StringBuilder perProcess = new StringBuilder();
        for (int f = 5; f < a.length; f++) {
            int kept = 0;
            for (String line : Files.readAllLines(Path.of(a[f]))) {
                String[] parts = line.trim().split("\\s+");
                if (parts.length != 2) {
                    continue;
                }
                long t = Long.parseLong(parts[0]);
                if (t >= startUs && t < endUs) {
                    times.add(t);
                    latencies.add(Long.parseLong(parts[1]));
                    kept++;
                }
            }
            perProcess.append(' ').append(kept);
        }
        long[] t = times.stream().mapToLong(Long::longValue).sorted().toArray();
        long[] lat = latencies.stream().mapToLong(Long::longValue).sorted().toArray();

        int maxInWindow = 0;
        long maxAt = startUs;
        for (int i = 0, j = 0; i < t.length; i++) {
            while (j < t.length && t[j] < t[i] + windowUs) {
                j++;
            }
            if (j - i > maxInWindow) {
                maxInWindow = j - i;
                maxAt = t[i];
            }
        }
        long steadyFrom = startUs + windowUs;
        long steady = Arrays.stream(t).filter(x -> x >= steadyFrom).count();
        double steadyWindows = (double) (endUs - steadyFrom) / windowUs;
        double utilisation = steadyWindows > 0 ? 100.0 * steady / (limit * steadyWindows) : 0;

        StringBuilder perWindow = new StringBuilder();
        for (long from = startUs; from < endUs; from += windowUs) {
            long lo = from;
            long hi = Math.min(from + windowUs, endUs);
            perWindow.append(' ').append(Arrays.stream(t).filter(x -> x >= lo && x < hi).count());
        }
        System.out.println("[ratelimit] " + name + ": grants per process:" + perProcess);
        System.out.println("[ratelimit] " + name + ": grants per fixed window from the start:" + perWindow);
        System.out.printf(Locale.ROOT, "[ratelimit] %s: the busiest window starts %.3f s after the start%n",
                name, (maxAt - startUs) / 1e6);
        System.out.printf(Locale.ROOT,
                "RESULT limiter=%s grants=%d max_in_window=%d ratio=%.2f utilisation=%.1f p50_ms=%.1f p99_ms=%.1f%n",
                name, t.length, maxInWindow, (double) maxInWindow / limit, utilisation,
                percentile(lat, 50) / 1e3, percentile(lat, 99) / 1e3);
    }

    /** Nearest-rank percentile; 0 for no values. */
    static long percentile(long[] sorted, int p) {
        if (sorted.length == 0) {
            return 0;
        }
        int rank = (int) Math.ceil(p / 100.0 * sorted.length);
        return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
    }

    // ------------------------------------------------------------------ cleanup

    static void cleanup(String[] a) {
        if (a.length != 2) {
            usage();
        }
        RedisClient client = RedisClient.create(a[0]);
        try (StatefulRedisConnection<String, String> connection = client.connect()) {
            RedisCommands<String, String> redis = connection.sync();
            long deleted = 0;
            ScanCursor cursor = ScanCursor.INITIAL;
            do {
                KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(a[1]).limit(1_000));
                if (!page.getKeys().isEmpty()) {
                    deleted += redis.unlink(page.getKeys().toArray(String[]::new));
                }
                cursor = page;
            } while (!cursor.isFinished());
            System.out.println("[ratelimit] removed " + deleted + " keys matching " + a[1]);
        } finally {
            client.shutdown();
        }
    }
}
