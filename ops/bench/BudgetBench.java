// The Java half of ops/bench/budget.sh: Kage's budget ledger against a naive check-then-INCRBY, side by side
// on the same Redis, in one process. Compiled against (a copy of) the worker's shaded jar (Lettuce and Kage's
// classes) and run on it. Not part of any production jar.
//
//   java -cp kage-worker.jar:classes BudgetBench URL THREADS SECONDS POOL_TOKENS CALL_MS
//
// Two phases per side, the sides one after another, each on fresh keys (namespace kage-budgetbench-<random>,
// removed at the end with SCAN + UNLINK, never FLUSH*):
//   throughput  THREADS threads on one shared Lettuce connection (as a worker's job threads share one) loop for
//               SECONDS: hold 100 tokens for a new job, then settle it to 50..100 tokens. A pair is one
//               operation; its latency is from the hold's call to the settle's return. The pool is unlimited.
//               kage:  BudgetLedger.reserve (one Lua script over the task's and the tenant's day and month
//                      pools, all or nothing) + BudgetLedger.settle (one script, exactly once).
//               naive: HGET used; if used + 100 > limit refuse; HINCRBY used <actual> (what PITFALLS 7 warns of).
//   overspend   the same THREADS threads against one pool of POOL_TOKENS in enforce mode, with a CALL_MS "call"
//               between the check and the charge, until each thread has been refused 3 times in a row:
//               the settled total against the limit. The ledger never passes it; the naive one does, by what
//               concurrent checks let through.
// Prints per side and phase
//   RESULT side=NAME ops_per_s=X p50_ms=X p99_ms=X used=N limit=N overspent=N
// and, last, RATIO kage_vs_naive_ops=R.

import dev.kage.budget.BudgetLedger;
import dev.kage.budget.BudgetLedger.Hold;
import dev.kage.budget.BudgetLedger.HoldRequest;
import dev.kage.budget.PeriodLimits;
import dev.kage.config.BudgetMode;
import dev.kage.redis.KageKeys;
import io.lettuce.core.KeyScanCursor;
import io.lettuce.core.RedisClient;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanCursor;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;

public final class BudgetBench {
    private static final long HOLD = 100;

    /** One way of spending from a pool: reserve (or check), then charge. */
    interface Spender {
        /** @return a handle to settle, or null when refused */
        Object hold(String job);

        void charge(Object handle, long tokens);

        long used();
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        int threads = Integer.parseInt(args[1]);
        int seconds = Integer.parseInt(args[2]);
        long pool = Long.parseLong(args[3]);
        long callMs = Long.parseLong(args[4]);
        String namespace = "kage-budgetbench-" + Long.toHexString(ThreadLocalRandom.current().nextLong());
        // The namespace's keys go however the bench ends: a bench stopped by a signal (timeout, Ctrl-C) once left
        // millions of task pools (7-day TTL) in the shared Redis, and every test's clean-up SCAN crawled through them.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> removeKeys(url, namespace), "budgetbench-cleanup"));
        RedisClient client = RedisClient.create(url);
        try (StatefulRedisConnection<String, String> connection = client.connect()) {
            RedisCommands<String, String> redis = connection.sync();
            KageKeys keys = new KageKeys(namespace);
            double[] ops = new double[2];
            int side = 0;
            for (String name : List.of("kage", "naive")) {
                Spender unlimited = spender(name, keys, redis, "tp", 0);
                double[] result = throughput(unlimited, threads, seconds);
                ops[side++] = result[0];
                System.out.printf(Locale.ROOT, "RESULT side=%s phase=throughput ops_per_s=%.0f p50_ms=%.2f p99_ms=%.2f%n", name,
                        result[0], result[1], result[2]);
                Spender limited = spender(name, keys, redis, "os", pool);
                overspend(limited, threads, callMs, pool);
                long used = limited.used();
                System.out.printf(Locale.ROOT, "RESULT side=%s phase=overspend used=%d limit=%d overspent=%d%n", name, used, pool,
                        Math.max(0, used - pool));
            }
            System.out.printf(Locale.ROOT, "RATIO kage_vs_naive_ops=%.2f%n", ops[0] / ops[1]);
        } finally {
            client.shutdown();
        }
    }

    /** Deletes every key of {@code namespace}, on a connection of its own (the bench's may be gone). */
    private static void removeKeys(String url, String namespace) {
        RedisClient client = RedisClient.create(url);
        try (StatefulRedisConnection<String, String> connection = client.connect()) {
            RedisCommands<String, String> redis = connection.sync();
            long removed = 0;
            ScanCursor cursor = ScanCursor.INITIAL;
            do {
                KeyScanCursor<String> page = redis.scan(cursor, ScanArgs.Builder.matches(namespace + "*").limit(500));
                if (!page.getKeys().isEmpty()) {
                    removed += redis.unlink(page.getKeys().toArray(String[]::new));
                }
                cursor = page;
            } while (!cursor.isFinished());
            System.out.println("removed " + removed + " keys of " + namespace);
        } catch (RuntimeException e) {
            System.err.println("could not remove the keys of " + namespace + ": " + e);
        } finally {
            client.shutdown();
        }
    }

    private static Spender spender(String name, KageKeys keys, RedisCommands<String, String> redis, String tenant, long limit) {
        if (name.equals("kage")) {
            BudgetLedger ledger = new BudgetLedger(keys, redis, BudgetMode.ENFORCE, 0.8, new PeriodLimits(limit, 0, 0, 0),
                    Clock.systemUTC());
            // Each phase's limit made the fleet's, as a worker starting with it does (the throughput phase's has none).
            ledger.defaults().publish(java.util.Map.of());
            return new Spender() {
                @Override
                public Object hold(String job) {
                    Hold hold = ledger.reserve(new HoldRequest(tenant, "task-" + job, "bench", job, "bench", HOLD, 0, 1_000_000, 0,
                            PeriodLimits.NONE, Duration.ofMinutes(5)));
                    return hold.accepted() ? hold : null;
                }

                @Override
                public void charge(Object handle, long tokens) {
                    ledger.settle((Hold) handle, tokens, 0);
                }

                @Override
                public long used() {
                    return ledger.tenantPools(tenant).getFirst().used();
                }
            };
        }
        String key = keys.tenantBudget(tenant, "naive");
        return new Spender() {
            @Override
            public Object hold(String job) {
                String used = redis.hget(key, "used");
                long now = used == null ? 0 : Long.parseLong(used);
                return limit > 0 && now + HOLD > limit ? null : job;
            }

            @Override
            public void charge(Object handle, long tokens) {
                redis.hincrby(key, "used", tokens);
            }

            @Override
            public long used() {
                String used = redis.hget(key, "used");
                return used == null ? 0 : Long.parseLong(used);
            }
        };
    }

    /** @return {ops/s, p50 ms, p99 ms} */
    private static double[] throughput(Spender spender, int threads, int seconds) throws InterruptedException {
        // A short warm-up: scripts loaded, JIT, connection.
        for (int i = 0; i < 200; i++) {
            spender.charge(spender.hold("warm-" + i), 50);
        }
        long end = System.nanoTime() + Duration.ofSeconds(seconds).toNanos();
        List<long[]> latencies = new ArrayList<>();
        List<Thread> workers = new ArrayList<>();
        AtomicLong ops = new AtomicLong();
        long started = System.nanoTime();
        for (int t = 0; t < threads; t++) {
            long[] mine = new long[2_000_000];
            latencies.add(mine);
            int id = t;
            workers.add(Thread.ofPlatform().start(() -> {
                int n = 0;
                while (System.nanoTime() < end && n < mine.length - 1) {
                    long t0 = System.nanoTime();
                    Object handle = spender.hold("tp-" + id + "-" + n);
                    spender.charge(handle, ThreadLocalRandom.current().nextLong(50, HOLD + 1));
                    mine[n++] = System.nanoTime() - t0;
                }
                ops.addAndGet(n);
                mine[mine.length - 1] = n; // the count, in the slot the loop leaves free
            }));
        }
        for (Thread w : workers) {
            w.join();
        }
        double elapsed = (System.nanoTime() - started) / 1e9;
        long total = ops.get();
        long[] all = new long[(int) total];
        int at = 0;
        for (long[] mine : latencies) {
            int n = (int) mine[mine.length - 1];
            System.arraycopy(mine, 0, all, at, n);
            at += n;
        }
        Arrays.sort(all);
        return new double[] {total / elapsed, all[all.length / 2] / 1e6, all[(int) (all.length * 0.99)] / 1e6};
    }

    private static void overspend(Spender spender, int threads, long callMs, long pool) throws InterruptedException {
        List<Thread> workers = new ArrayList<>();
        // A side that never refuses (a limit that did not apply) stops at four pools' worth, its overspend plain to see,
        // instead of holding for ever.
        long maxGrants = Math.max(1, 4 * pool / HOLD);
        java.util.concurrent.atomic.AtomicLong granted = new java.util.concurrent.atomic.AtomicLong();
        for (int t = 0; t < threads; t++) {
            int id = t;
            workers.add(Thread.ofPlatform().start(() -> {
                int refusedInARow = 0;
                for (int n = 0; refusedInARow < 3 && granted.get() < maxGrants; n++) {
                    Object handle = spender.hold("os-" + id + "-" + n);
                    if (handle == null) {
                        refusedInARow++;
                        continue;
                    }
                    refusedInARow = 0;
                    granted.incrementAndGet();
                    try {
                        Thread.sleep(callMs); // the agent's call between the check and the charge
                    } catch (InterruptedException e) {
                        return;
                    }
                    spender.charge(handle, HOLD);
                }
            }));
        }
        for (Thread w : workers) {
            w.join();
        }
    }
}
