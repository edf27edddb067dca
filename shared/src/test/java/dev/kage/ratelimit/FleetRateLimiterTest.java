package dev.kage.ratelimit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kage.ratelimit.FleetRateLimiter.Decision;
import dev.kage.ratelimit.FleetRateLimiter.FailureMode;
import dev.kage.ratelimit.FleetRateLimiter.Reason;
import dev.kage.redis.KageKeys;
import dev.kage.task.Priority;
import dev.kage.testing.PrivateRedis;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TestServices;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.redisson.api.RedissonClient;

/** The fleet-wide limiter on a real Redis, with several clients standing in for several workers. */
class FleetRateLimiterTest {
    private final RedisFixture redis = new RedisFixture();
    private final List<RedissonClient> clients = new ArrayList<>();

    @AfterEach
    void cleanUp() {
        clients.forEach(RedissonClient::shutdown);
        redis.close();
    }

    private FleetRateLimiter limiter() {
        return limiter(redis.keys(), TestServices.redisUrl(), FailureMode.CLOSED, new SimpleMeterRegistry());
    }

    private FleetRateLimiter limiter(KageKeys keys, String url, FailureMode mode, SimpleMeterRegistry registry) {
        RedissonClient client = FleetRateLimiter.client(url);
        clients.add(client);
        return new FleetRateLimiter(keys, client, mode, registry);
    }

    @Test
    void threeClientsWithManyThreadsNeverPassTheLimitInAnySlidingWindow() throws Exception {
        Limit limit = new Limit(20, Duration.ofMillis(500), 0, Duration.ofMillis(25));
        List<FleetRateLimiter> workers = List.of(limiter(), limiter(), limiter());
        workers.forEach(w -> w.configure("claude-code", limit));
        ExecutorService pool = Executors.newFixedThreadPool(24);
        List<Long> grants = Collections.synchronizedList(new ArrayList<>());
        List<Long> serverGrants = Collections.synchronizedList(new ArrayList<>());
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(2_600);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<?>> runs = new ArrayList<>();
        for (int i = 0; i < 24; i++) {
            FleetRateLimiter worker = workers.get(i % 3);
            runs.add(pool.submit(() -> {
                start.await();
                while (System.nanoTime() < end) {
                    FleetRateLimiter.Grant grant = worker.acquire("claude-code", Priority.NORMAL, 0);
                    grants.add(System.nanoTime());
                    serverGrants.add(grant.decision().grantedAtMicros() * 1_000);
                }
                return null;
            }));
        }
        start.countDown();
        for (Future<?> run : runs) {
            run.get(30, TimeUnit.SECONDS);
        }
        pool.shutdown();
        // Exact by the Redis clock: no window + guard holds more than the limit. (What callers see adds their own
        // scheduling lag, which the guard absorbs; the multi-process e2e test and ops/bench/ratelimit.sh measure that.)
        List<Long> server = new ArrayList<>(serverGrants);
        Collections.sort(server);
        assertThat(maxInWindow(server, Duration.ofMillis(525))).as("grants in any 525 ms, Redis clock").isLessThanOrEqualTo(20);
        List<Long> sorted = new ArrayList<>(grants);
        // 2.6 s at 20 per 525 ms is about 100 grants; a limiter that mostly says no is as broken as one that says yes.
        assertThat(sorted.size()).as("grants in 2.6 s").isGreaterThanOrEqualTo(60);
    }

    @Test
    void aRuntimeChangeIsAppliedAtOnceWithoutAFreshBurst() {
        FleetRateLimiter a = limiter();
        FleetRateLimiter b = limiter();
        Limit ten = new Limit(10, Duration.ofSeconds(30), 0, Duration.ZERO);
        a.configure("codex", ten);
        b.configure("codex", ten);
        assertThat(takeAll(a, "codex")).isEqualTo(10);

        // Raised: the ten already granted still count, so exactly ten more, not a fresh twenty.
        a.override("codex", new Limit(20, Duration.ofSeconds(30), 0, Duration.ZERO));
        assertThat(takeAll(b, "codex")).as("another worker sees the new limit at once").isEqualTo(10);

        // Lowered below what is in the window: nothing until the window drains.
        a.override("codex", new Limit(5, Duration.ofSeconds(30), 0, Duration.ZERO));
        Decision denied = b.tryAcquire("codex", "job-x", Priority.NORMAL, 0);
        assertThat(denied.granted()).isFalse();
        assertThat(denied.reason()).isEqualTo(Reason.REQUESTS);
        assertThat(denied.limit()).isEqualTo(5);

        // A worker (re)starting with its configured limit does not undo the operator's change...
        assertThat(b.configure("codex", ten).source()).isEqualTo("api");
        assertThat(a.state("codex").orElseThrow().limit().requests()).isEqualTo(5);
        // ...until the operator resets it; then a changed configuration is applied, not ignored.
        a.reset("codex", ten);
        assertThat(b.configure("codex", new Limit(12, Duration.ofSeconds(30), 0, Duration.ZERO)).changed()).isTrue();
        assertThat(a.state("codex").orElseThrow().limit().requests()).isEqualTo(12);
        assertThat(a.state("codex").orElseThrow().used()).isEqualTo(20);
    }

    @Test
    void aWiderWindowCountsTheCallsTheOldLimitAllowedBeforeWhatTheLimiterRemembers() {
        FleetRateLimiter a = limiter();
        FleetRateLimiter b = limiter();
        Limit perSecond = new Limit(10, Duration.ofSeconds(1), 1_000, Duration.ZERO);
        a.configure("wide", perSecond);
        b.configure("wide", perSecond);
        assertThat(takeAll(a, "wide")).isEqualTo(10);

        // The same pace over a minute: the fleet may have made 600 calls in the last minute, of which the limiter
        // remembers the last second's. Granting 590 now would put about 1,190 into the provider's minute.
        a.override("wide", new Limit(600, Duration.ofSeconds(60), 60_000, Duration.ZERO));
        int now = takeAll(b, "wide");
        assertThat(now).as("no fresh burst: the unremembered 59 s count as used at the old pace").isLessThanOrEqualTo(10);
        FleetRateLimiter.LimitState state = a.state("wide").orElseThrow();
        assertThat(state.used()).isBetween(590L, 600L);
        assertThat(state.tokensUsed()).as("tokens alike: the old 1,000 a second over 59 s").isBetween(55_000L, 60_000L);
        Decision tokens = b.tryAcquire("wide", "big", Priority.NORMAL, 6_000);
        assertThat(tokens.granted()).isFalse();
        assertThat(tokens.reason()).isIn(Reason.TOKENS, Reason.REQUESTS);
        // The placeholders leave the window as real grants would: about ten a second come free, not 590 at once.
        await().atMost(Duration.ofSeconds(5)).until(() -> b.tryAcquire("wide", "later", Priority.NORMAL, 0).granted());
        assertThat(takeAll(b, "wide")).isLessThanOrEqualTo(20);

        // Narrower again: nothing to make up; the placeholders, older than the new window, stop counting.
        a.override("wide", new Limit(10, Duration.ofSeconds(1), 1_000, Duration.ZERO));
        assertThat(a.state("wide").orElseThrow().used()).as("only the last second's real grants").isLessThanOrEqualTo(30);
    }

    @Test
    void tokenCountsOf10To14AndMoreAreStoredAsDigitsNotInTheLuaNumbersExponentForm() {
        // Lua printed 2e14 as "2e+14" in a grant's member, and a widened window's placeholder shares as
        // "4.9180327868852e+14": every script that read them back failed (the group's state and every acquire) until
        // the members left the window.
        FleetRateLimiter a = limiter();
        long limit = 10_000_000_000_000_000L;
        a.configure("huge", new Limit(10, Duration.ofSeconds(1), limit, Duration.ZERO));
        assertThat(a.tryAcquire("huge", "j1", Priority.NORMAL, 200_000_000_000_000L).granted()).isTrue();
        assertThat(a.state("huge").orElseThrow().tokensUsed()).isEqualTo(200_000_000_000_000L);

        a.override("huge", new Limit(600, Duration.ofSeconds(61), limit, Duration.ZERO));
        assertThat(a.state("huge").orElseThrow().tokensUsed()).isGreaterThan(200_000_000_000_000L);
        assertThat(a.tryAcquire("huge", "j2", Priority.NORMAL, 5).reason()).isNotNull();
        assertThat(a.state("huge")).isPresent();
    }

    @Test
    void aCooldownHoldsTheFleetBackEvenWhenTheGroupsHashIsGone() {
        // Redis lost its data (no persistence, a restart): the next ask sets the group up again from the configuration,
        // but a 429 answered in between must still pause the fleet.
        FleetRateLimiter a = limiter();
        a.configure("vanished", new Limit(40, Duration.ofSeconds(60), 0, Duration.ZERO));
        redis.redis().del(redis.keys().limiter("vanished"));
        assertThat(a.coolDown("vanished", Duration.ofSeconds(3)).pause()).isGreaterThan(Duration.ofMillis(2_500));
        assertThat(redis.redis().pttl(redis.keys().cooldown("vanished"))).isGreaterThan(2_500L);
        Decision denied = a.tryAcquire("vanished", "j1", Priority.HIGH, 0);
        assertThat(denied.granted()).isFalse();
        assertThat(denied.reason()).isEqualTo(Reason.COOLDOWN);
    }

    @Test
    void aCooldownPausesTheGroupForEveryWorkerAndHalvesTheRateOncePerEpisode() {
        FleetRateLimiter a = limiter();
        FleetRateLimiter b = limiter();
        Limit limit = new Limit(40, Duration.ofSeconds(60), 0, Duration.ZERO);
        a.configure("anthropic", limit);
        b.configure("anthropic", limit);
        assertThat(a.tryAcquire("anthropic", "j1", Priority.NORMAL, 0).granted()).isTrue();

        FleetRateLimiter.SlowDown first = a.coolDown("anthropic", Duration.ofSeconds(3));
        assertThat(first.lowered()).isTrue();
        assertThat(first.effective()).isEqualTo(20);
        FleetRateLimiter.SlowDown second = b.coolDown("anthropic", Duration.ofSeconds(1));
        assertThat(second.lowered()).as("the same burst of 429s lowers the rate once").isFalse();
        assertThat(second.pause()).as("a shorter pause does not shorten the one in force")
                .isGreaterThan(Duration.ofMillis(2_500));

        Decision denied = b.tryAcquire("anthropic", "j2", Priority.HIGH, 0);
        assertThat(denied.granted()).isFalse();
        assertThat(denied.reason()).isEqualTo(Reason.COOLDOWN);
        assertThat(denied.retryIn()).isBetween(Duration.ofMillis(2_000), Duration.ofMillis(3_000));
        FleetRateLimiter.LimitState state = a.state("anthropic").orElseThrow();
        assertThat(state.effective()).isEqualTo(20);
        assertThat(state.cooldown()).isPositive();
    }

    @Test
    void aStormOfPausesWithinOneWindowLowersTheRateOnceAndOneAWindowLaterLowersItAgain() {
        FleetRateLimiter a = limiter();
        FleetRateLimiter b = limiter();
        Limit limit = new Limit(40, Duration.ofSeconds(60), 0, Duration.ZERO);
        a.configure("storm", limit);
        b.configure("storm", limit);
        assertThat(a.coolDown("storm", Duration.ofMillis(50)).effective()).isEqualTo(20);
        // The provider's Retry-After ends and the next call meets another 429: a new pause, the same window.
        await().atMost(Duration.ofSeconds(5)).until(() -> a.state("storm").orElseThrow().cooldown().isZero());
        FleetRateLimiter.SlowDown again = b.coolDown("storm", Duration.ofMillis(50));
        assertThat(again.pause()).as("the new 429 pauses the fleet again").isPositive();
        assertThat(again.lowered()).as("a second pause within the window of the last decrease").isFalse();
        assertThat(again.effective()).isEqualTo(20);
        // Nor do the rate-limit headers lower it again within that window.
        assertThat(a.observeQuota("storm", 1, 40, null).orElseThrow().lowered()).isFalse();
        assertThat(a.state("storm").orElseThrow().effective()).isEqualTo(20);

        // A window after the last decrease, a 429 lowers it again (from what it has recovered since: +4 per window).
        a.configure("short", new Limit(40, Duration.ofSeconds(1), 0, Duration.ZERO));
        assertThat(a.coolDown("short", Duration.ofMillis(10)).effective()).isEqualTo(20);
        await().pollDelay(Duration.ofMillis(1_100)).atMost(Duration.ofSeconds(5))
                .until(() -> a.state("short").orElseThrow().cooldown().isZero());
        FleetRateLimiter.SlowDown later = b.coolDown("short", Duration.ofMillis(10));
        assertThat(later.lowered()).isTrue();
        assertThat(later.effective()).isLessThan(20);
    }

    @Test
    void aDecreaseLowersThePaceFromNowOnNotThePastWindowsCalls() {
        FleetRateLimiter a = limiter();
        a.configure("busy", new Limit(20, Duration.ofSeconds(60), 0, Duration.ZERO));
        // The fleet ran at its limit: 16 calls made, and 4 granted whose calls have not left yet (a send lease).
        for (int i = 0; i < 16; i++) {
            assertThat(a.tryAcquire("busy", "made-" + i, Priority.NORMAL, 0).granted()).isTrue();
        }
        for (int i = 0; i < 4; i++) {
            assertThat(a.tryAcquire("busy", "leaving-" + i, Priority.NORMAL, 0, true).granted()).isTrue();
        }
        assertThat(a.state("busy").orElseThrow().used()).isEqualTo(20);

        assertThat(a.coolDown("busy", Duration.ofMillis(10)).effective()).isEqualTo(10);
        // Halved, and the calls already made count half too (every other one, evenly): the window holds 8 of them and
        // the 4 still leaving. Counted whole, the 20 would keep a window at 10 shut until 11 of them aged out (a minute
        // here; ~30 s in a fleet at 600/min).
        assertThat(a.state("busy").orElseThrow().used()).isEqualTo(12);
    }

    @Test
    void afterA429sPauseOneCallGoesFirstAndTheOthersWaitForItsAnswer() {
        FleetRateLimiter a = limiter();
        FleetRateLimiter b = limiter();
        Limit limit = new Limit(40, Duration.ofSeconds(60), 0, Duration.ZERO);
        a.configure("probed", limit);
        b.configure("probed", limit);
        assertThat(a.tryAcquire("probed", "before", Priority.NORMAL, 0).probe()).as("no pause yet: no probe").isFalse();
        a.coolDown("probed", Duration.ofMillis(50));
        await().atMost(Duration.ofSeconds(5)).until(() -> a.state("probed").orElseThrow().cooldown().isZero());
        assertThat(b.headroom("probed", Duration.ofSeconds(5)).free()).as("one job may be claimed: the probe").isEqualTo(1);

        Decision probe = a.tryAcquire("probed", "j1", Priority.NORMAL, 0);
        assertThat(probe.granted()).isTrue();
        assertThat(probe.probe()).isTrue();
        Decision other = b.tryAcquire("probed", "j2", Priority.HIGH, 0);
        assertThat(other.granted()).as("the others wait for the probe's answer").isFalse();
        assertThat(other.reason()).isEqualTo(Reason.PROBE);
        assertThat(other.retryIn()).isLessThanOrEqualTo(Duration.ofMillis(251));
        FleetRateLimiter.Headroom waiting = b.headroom("probed", Duration.ofSeconds(5));
        assertThat(waiting.free()).isZero();
        assertThat(waiting.lookAgain()).isLessThanOrEqualTo(Duration.ofMillis(251));

        // The probe meets another 429: paused again, and after that pause a new probe goes first.
        a.coolDown("probed", Duration.ofMillis(50));
        await().atMost(Duration.ofSeconds(5)).until(() -> a.state("probed").orElseThrow().cooldown().isZero());
        Decision second = b.tryAcquire("probed", "j2", Priority.NORMAL, 0);
        assertThat(second.probe()).isTrue();
        a.answered("probed", probe);
        assertThat(a.tryAcquire("probed", "j3", Priority.NORMAL, 0).granted()).as("the old probe's answer opens nothing").isFalse();

        // Its answer came without a 429: open again for everyone.
        b.answered("probed", second);
        Decision after = a.tryAcquire("probed", "j3", Priority.NORMAL, 0);
        assertThat(after.granted()).isTrue();
        assertThat(after.probe()).isFalse();
        assertThat(b.headroom("probed", Duration.ofSeconds(5)).free()).isGreaterThan(1);

        // A probe whose answer never comes (its worker died) holds the others for its lease only.
        a.coolDown("probed", Duration.ofMillis(50));
        await().atMost(Duration.ofSeconds(5)).until(() -> a.state("probed").orElseThrow().cooldown().isZero());
        assertThat(a.tryAcquire("probed", "lost", Priority.NORMAL, 0).probe()).isTrue();
        assertThat(b.tryAcquire("probed", "j4", Priority.NORMAL, 0).granted()).isFalse();
        long leaseAgo = (System.currentTimeMillis() - FleetRateLimiter.PROBE_LEASE.toMillis() - 1_000) * 1_000;
        redis.redis().hset(redis.keys().limiter("probed"), "probe", Long.toString(leaseAgo)); // as if granted a lease ago
        Decision afterLease = b.tryAcquire("probed", "j4", Priority.NORMAL, 0);
        assertThat(afterLease.granted()).isTrue();
        assertThat(afterLease.probe()).isFalse();
    }

    @Test
    void theEffectiveRateIsEnforcedAndRecoversATenthPerWindow() throws Exception {
        FleetRateLimiter a = limiter();
        a.configure("gemini", new Limit(10, Duration.ofMillis(300), 0, Duration.ZERO));
        a.observeQuota("gemini", 0, 100, Duration.ofMillis(1));
        assertThat(a.state("gemini").orElseThrow().effective()).isEqualTo(8);
        // The spent quota paused the group until the provider's reset, 1 ms away.
        await().atMost(Duration.ofSeconds(2)).until(() -> a.state("gemini").orElseThrow().cooldown().isZero());
        assertThat(takeAll(a, "gemini")).as("only the effective rate is handed out").isEqualTo(8);
        // +1 per 300 ms window: back at the limit after two windows, not at once.
        assertThat(a.state("gemini").orElseThrow().effective()).isLessThan(10);
        await().atMost(Duration.ofSeconds(3)).until(() -> a.state("gemini").orElseThrow().effective() == 10);
    }

    @Test
    void highPriorityWaitersGetTheNextPermitBeforeNormalOnes() throws Exception {
        FleetRateLimiter a = limiter();
        FleetRateLimiter b = limiter();
        Limit limit = new Limit(2, Duration.ofMillis(400), 0, Duration.ZERO);
        a.configure("codex", limit);
        b.configure("codex", limit);
        assertThat(takeAll(a, "codex")).isEqualTo(2);
        Decision high = a.tryAcquire("codex", "urgent", Priority.HIGH, 0);
        assertThat(high.reason()).isEqualTo(Reason.REQUESTS);
        await().atMost(Duration.ofSeconds(2)).until(() -> a.state("codex").orElseThrow().used() == 0);

        // Two permits are free and one high caller waits: one may go to a normal caller, the last is held for it.
        assertThat(b.tryAcquire("codex", "routine-1", Priority.NORMAL, 0).granted()).isTrue();
        Decision normal = b.tryAcquire("codex", "routine", Priority.NORMAL, 0);
        assertThat(normal.granted()).isFalse();
        assertThat(normal.reason()).isEqualTo(Reason.PRIORITY);
        Decision low = b.tryAcquire("codex", "batch", Priority.LOW, 0);
        assertThat(low.reason()).isEqualTo(Reason.PRIORITY);
        assertThat(a.tryAcquire("codex", "urgent", Priority.HIGH, 0).granted()).isTrue();
        // Served: the high caller is no longer registered; the normal one now waits for the window, not for it.
        assertThat(b.tryAcquire("codex", "routine", Priority.NORMAL, 0).reason()).isEqualTo(Reason.REQUESTS);
        assertThat(a.state("codex").orElseThrow().waiting().get(Priority.HIGH)).isZero();
    }

    @Test
    void aSteadyStreamOfHighWorkDoesNotStarveTheNormalCallersWaitingBesideIt() {
        // One permit per window and always a high caller waiting: each time the permit comes free, a normal caller asks
        // first. It is refused for priority, but after FAIR_SHARE (4) grants to high callers while it waits, it is served.
        FleetRateLimiter a = limiter();
        a.configure("busy", new Limit(1, Duration.ofSeconds(60), 0, Duration.ZERO));
        Decision held = a.tryAcquire("busy", "h-0", Priority.HIGH, 0);
        assertThat(held.granted()).isTrue();
        int normalServedAt = -1;
        List<Reason> refusals = new java.util.ArrayList<>();
        for (int i = 1; i <= 12 && normalServedAt < 0; i++) {
            assertThat(a.tryAcquire("busy", "h-" + i, Priority.HIGH, 0).granted()).as("full: h-%d registers as waiting", i).isFalse();
            a.release("busy", "h-" + (i - 1), held);
            Decision normal = a.tryAcquire("busy", "n", Priority.NORMAL, 0);
            if (normal.granted()) {
                normalServedAt = i;
                held = normal;
                break;
            }
            refusals.add(normal.reason());
            held = a.tryAcquire("busy", "h-" + i, Priority.HIGH, 0);
            assertThat(held.granted()).as("h-%d takes the permit it waited for", i).isTrue();
        }
        assertThat(refusals).containsOnly(Reason.PRIORITY);
        assertThat(normalServedAt).as("served within five permits, not never").isBetween(1, 5);
    }

    @Test
    void theShareANormalCallerIsOwedIsHeldForItEvenWhenHighCallersAskFirst() {
        // As above, but after each release a high caller asks first: the permit it would take is the normal caller's once
        // the normal rank is owed its share.
        FleetRateLimiter a = limiter();
        a.configure("first", new Limit(1, Duration.ofSeconds(60), 0, Duration.ZERO));
        Decision held = a.tryAcquire("first", "h-0", Priority.HIGH, 0);
        assertThat(held.granted()).isTrue();
        assertThat(a.tryAcquire("first", "n", Priority.NORMAL, 0).granted()).as("full: n registers as waiting").isFalse();
        String holder = "h-0";
        int normalServedAt = -1;
        for (int i = 1; i <= 12; i++) {
            a.release("first", holder, held);
            Decision high = a.tryAcquire("first", "h-" + i, Priority.HIGH, 0);
            if (high.granted()) {
                held = high;
                holder = "h-" + i;
                assertThat(a.tryAcquire("first", "n", Priority.NORMAL, 0).granted()).isFalse();
                continue;
            }
            assertThat(high.reason()).isEqualTo(Reason.PRIORITY);
            Decision normal = a.tryAcquire("first", "n", Priority.NORMAL, 0);
            assertThat(normal.granted()).as("the held permit goes to the owed normal caller").isTrue();
            normalServedAt = i;
            break;
        }
        assertThat(normalServedAt).as("served within five permits, not never").isBetween(1, 5);
    }

    @Test
    void tokensPerWindowAreTakenAllOrNothing() {
        FleetRateLimiter a = limiter();
        a.configure("openai", new Limit(100, Duration.ofSeconds(30), 1_000, Duration.ZERO));
        assertThat(a.tryAcquire("openai", "j1", Priority.NORMAL, 600).granted()).isTrue();
        Decision tooMany = a.tryAcquire("openai", "j2", Priority.NORMAL, 500);
        assertThat(tooMany.granted()).isFalse();
        assertThat(tooMany.reason()).isEqualTo(Reason.TOKENS);
        assertThat(tooMany.retryIn()).isGreaterThan(Duration.ofSeconds(25));
        assertThat(a.tryAcquire("openai", "j3", Priority.NORMAL, 400).granted()).isTrue();
        FleetRateLimiter.LimitState state = a.state("openai").orElseThrow();
        assertThat(state.used()).as("the denied call took no request permit either").isEqualTo(2);
        assertThat(state.tokensUsed()).isEqualTo(1_000);
    }

    @Test
    void aPermitIsHeldForTheWholeWindowAfterItsCallLeftNotJustAfterItsGrant() throws Exception {
        FleetRateLimiter a = limiter();
        a.configure("slow-start", new Limit(1, Duration.ofMillis(600), 0, Duration.ZERO));
        Decision grant = a.tryAcquire("slow-start", "job-1", Priority.NORMAL, 0, true);
        assertThat(grant.granted()).isTrue();
        // For a window and a half after the grant the call has not left: the leased permit stays held throughout.
        await().during(Duration.ofMillis(900)).atMost(Duration.ofSeconds(2))
                .until(() -> a.state("slow-start").orElseThrow().used() == 1);
        assertThat(a.tryAcquire("slow-start", "job-2", Priority.NORMAL, 0).granted()).isFalse();
        a.markSent("slow-start", "job-1", grant);
        // 1.2 s after the grant but only 300 ms after the call left: still held, until a window after the call.
        await().during(Duration.ofMillis(300)).atMost(Duration.ofSeconds(1))
                .until(() -> a.state("slow-start").orElseThrow().used() == 1);
        Decision second = a.tryAcquire("slow-start", "job-2", Priority.NORMAL, 0);
        assertThat(second.granted()).isFalse();
        assertThat(second.retryIn()).isBetween(Duration.ofMillis(100), Duration.ofMillis(400));
        await().atMost(Duration.ofSeconds(2)).until(() -> a.tryAcquire("slow-start", "job-2", Priority.NORMAL, 0).granted());
    }

    @Test
    void aPermitWhoseCallNeverLeftIsGivenBackWithItsTokens() {
        FleetRateLimiter a = limiter();
        a.configure("flaky", new Limit(1, Duration.ofSeconds(30), 500, Duration.ZERO));
        Decision grant = a.tryAcquire("flaky", "job-1", Priority.NORMAL, 400, true);
        assertThat(grant.granted()).isTrue();
        assertThat(a.tryAcquire("flaky", "job-2", Priority.NORMAL, 100).granted()).isFalse();
        a.release("flaky", "job-1", grant);
        FleetRateLimiter.LimitState state = a.state("flaky").orElseThrow();
        assertThat(state.used()).isZero();
        assertThat(state.tokensUsed()).isZero();
        assertThat(a.tryAcquire("flaky", "job-2", Priority.NORMAL, 500).granted()).isTrue();
    }

    @Test
    void tokenWaitsNeverSpinAndAStaleTokenCountIsForgottenWithItsWindow() {
        FleetRateLimiter a = limiter();
        a.configure("tpm", new Limit(100, Duration.ofSeconds(30), 1_000, Duration.ZERO));
        assertThat(a.tryAcquire("tpm", "j1", Priority.NORMAL, 900).granted()).isTrue();
        Decision denied = a.tryAcquire("tpm", "j2", Priority.NORMAL, 900);
        assertThat(denied.reason()).isEqualTo(Reason.TOKENS);
        assertThat(denied.retryIn()).isGreaterThan(Duration.ofSeconds(20));
        // The window's permits vanish (they expire when idle); the count in the hash must not outlive them.
        redis.redis().del(redis.keys().limiterTokens("tpm"), redis.keys().limiterRequests("tpm"));
        assertThat(a.tryAcquire("tpm", "j3", Priority.NORMAL, 1_000).granted()).isTrue();
        assertThat(a.state("tpm").orElseThrow().tokensUsed()).isEqualTo(1_000);
        assertThat(redis.redis().hget(redis.keys().limiter("tpm"), "tokens_used")).isEqualTo("1000");
    }

    @Test
    void anAbsurdPauseFromAProviderIsBoundedToAnHour() {
        FleetRateLimiter a = limiter();
        a.configure("odd", new Limit(5, Duration.ofSeconds(1), 0, Duration.ZERO));
        FleetRateLimiter.SlowDown slowDown = a.coolDown("odd", Duration.ofDays(365_000));
        assertThat(slowDown.pause()).isEqualTo(Duration.ofHours(1));
        assertThat(redis.redis().pttl(redis.keys().cooldown("odd"))).isBetween(3_500_000L, 3_600_000L);
    }

    @Test
    void aGroupWhoseKeysVanishedIsSetUpAgainFromTheConfiguration() {
        FleetRateLimiter a = limiter();
        a.configure("claude-code", new Limit(3, Duration.ofSeconds(30), 0, Duration.ZERO));
        redis.redis().del(redis.keys().limiter("claude-code"));
        assertThat(takeAll(a, "claude-code")).isEqualTo(3);
        assertThat(a.groups()).contains("claude-code");
    }

    @Test
    void withRedisUnreachableItFailsClosedByDefaultAndOpenOnlyWhenToldAndCountsIt() {
        assumeTrue(PrivateRedis.available(), "redis-server is not installed");
        try (PrivateRedis server = PrivateRedis.start(false)) {
            SimpleMeterRegistry closedMeters = new SimpleMeterRegistry();
            SimpleMeterRegistry openMeters = new SimpleMeterRegistry();
            KageKeys keys = new KageKeys(TestServices.newNamespace());
            FleetRateLimiter closed = limiter(keys, server.url(), FailureMode.CLOSED, closedMeters);
            FleetRateLimiter open = limiter(keys, server.url(), FailureMode.OPEN, openMeters);
            Limit limit = new Limit(1, Duration.ofSeconds(30), 0, Duration.ZERO);
            closed.configure("codex", limit);
            open.configure("codex", limit);
            assertThat(closed.tryAcquire("codex", "j1", Priority.NORMAL, 0).granted()).isTrue();
            assertThat(open.tryAcquire("codex", "j2", Priority.NORMAL, 0).granted()).isFalse();

            server.stop();
            Decision refused = closed.tryAcquire("codex", "j3", Priority.NORMAL, 0);
            assertThat(refused.granted()).isFalse();
            assertThat(refused.reason()).isEqualTo(Reason.UNAVAILABLE);
            assertThat(closedMeters.get("kage.ratelimit.redis.errors").counter().count()).isEqualTo(1);

            Decision unchecked = open.tryAcquire("codex", "j4", Priority.NORMAL, 0);
            assertThat(unchecked.granted()).isTrue();
            assertThat(unchecked.reason()).isEqualTo(Reason.UNCHECKED);
            assertThat(openMeters.get("kage.ratelimit.unchecked.grants").counter().count()).isEqualTo(1);

            server.restart();
            // Redisson reconnects in the background: the first calls after the restart may still find no connection.
            java.util.concurrent.atomic.AtomicInteger attempt = new java.util.concurrent.atomic.AtomicInteger();
            Decision back = org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(100))
                    .until(() -> closed.tryAcquire("codex", "j5-" + attempt.incrementAndGet(), Priority.NORMAL, 0),
                            decision -> decision.reason() != Reason.UNAVAILABLE);
            assertThat(back.reason()).as("checked again once Redis answers; the restarted server lost the window")
                    .isIn(Reason.GRANTED, Reason.REQUESTS);
        }
    }

    private static int takeAll(FleetRateLimiter limiter, String group) {
        int taken = 0;
        while (limiter.tryAcquire(group, "take-" + taken, Priority.NORMAL, 0).granted()) {
            taken++;
            if (taken > 1_000) {
                throw new AssertionError("limiter never says no");
            }
        }
        return taken;
    }

    /** The most grants (nanoTime, sorted) in any half-open window [t, t + window). */
    static int maxInWindow(List<Long> sorted, Duration window) {
        int max = 0;
        int from = 0;
        for (int to = 0; to < sorted.size(); to++) {
            while (sorted.get(to) - sorted.get(from) >= window.toNanos()) {
                from++;
            }
            max = Math.max(max, to - from + 1);
        }
        return max;
    }
}
