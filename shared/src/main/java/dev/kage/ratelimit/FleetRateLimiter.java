package dev.kage.ratelimit;

import dev.kage.redis.KageKeys;
import dev.kage.task.Priority;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Metrics;
import io.micrometer.core.instrument.Timer;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import org.redisson.Redisson;
import org.redisson.api.RScript;
import org.redisson.api.RedissonClient;
import org.redisson.client.RedisException;
import org.redisson.client.codec.StringCodec;
import org.redisson.config.Config;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One limit per limit group for the whole fleet: at most N calls (and T tokens) in any sliding
 * window, however many workers ask, on the Redisson client.
 *
 * <p>Why not {@code RRateLimiter.tryAcquire}: it stamps each permit with the caller's
 * {@code System.currentTimeMillis()} (redisson #3639), so a worker whose clock runs ahead frees
 * everyone's permits early; {@code trySetRate} never changes a stored rate and {@code setRate}
 * deletes the granted permits, handing out a fresh burst (redisson #2322, #5487, #5900). Kage keeps
 * Redisson's sliding-log design (a sorted set of granted permits per window) and runs its own scripts
 * through Redisson's {@link RScript}, with these differences:
 * <ul>
 *   <li>every time is the Redis server's ({@code TIME}), so no worker's clock matters;</li>
 *   <li>a permit is held for the window plus a guard ({@link Limit#guard()}), so the lag between a
 *       grant and the call reaching the provider cannot put a call too many into its window;</li>
 *   <li>a limit change keeps the granted permits: never ignored, never a burst;</li>
 *   <li>one script checks the fleet-wide cooldown, the adaptive (effective) rate, higher-priority
 *       waiters, requests and tokens, all or nothing.</li>
 * </ul>
 * Keys are those of {@link KageKeys#limiter(String)}; a group is an agent's name unless agents that
 * bill one provider account share one.
 *
 * <p>When Redis cannot be reached the limiter does what {@link FailureMode} says, logs it once per
 * outage and counts it ({@code kage_ratelimit_redis_errors_total}); it never falls back to a limit of
 * its own. Thread-safe.
 */
public final class FleetRateLimiter implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(FleetRateLimiter.class);
    /**
     * How long a waiting caller's registration outlives its announced wait, ms: long enough for a job that
     * was sent to the delayed set to be promoted and ask again, so a waiting high-priority job keeps its
     * claim on the next permits.
     */
    static final long WAITER_SLACK_MS = 3_000;
    /**
     * A permit asked for with {@link #tryAcquire(String, String, Priority, long, boolean) sendLease} counts from
     * grant + this until {@link #markSent} stamps it with the time its call left: a caller that stalls between
     * grant and call (a GC pause, a starved machine) cannot see its permit released before its call is made.
     * A caller that dies in between holds its permit this much longer than a window.
     */
    public static final Duration SEND_LEASE = Duration.ofSeconds(10);

    /**
     * After a 429's pause one call, the probe, goes first and the others wait for its answer ({@link #answered}, or
     * another 429), at most this long: a probe whose worker died or whose call hangs does not hold the group longer.
     */
    public static final Duration PROBE_LEASE = Duration.ofSeconds(10);
    /** How long to wait before asking again while Redis is unreachable (fail-closed). */
    static final Duration UNAVAILABLE_RETRY = Duration.ofSeconds(1);

    private static final String ACQUIRE = script("acquire.lua");
    private static final String CONFIGURE = script("configure.lua");
    private static final String SLOW_DOWN = script("slow-down.lua");
    private static final String STATE = script("state.lua");
    private static final String HEADROOM = script("headroom.lua");
    private static final String SENT = script("sent.lua");
    private static final String RELEASE = script("release.lua");
    private static final String ANSWERED = script("answered.lua");
    /** The longest fleet-wide pause a provider can ask for: a Retry-After beyond it is taken as this. */
    public static final Duration MAX_PAUSE = Duration.ofHours(1);

    private final KageKeys keys;
    private final RedissonClient redisson;
    private final RScript scripts;
    private final FailureMode failureMode;
    private final boolean ownsClient;
    private final Map<String, Limit> configured = new ConcurrentHashMap<>();
    private final AtomicBoolean redisDown = new AtomicBoolean();
    private final Counter redisErrors;
    private final Counter failedOpen;
    private final MeterRegistry registry;

    /**
     * @param redisson    a client whose timeouts bound how long a call may take when Redis is gone
     * @param failureMode what to do when Redis cannot be reached
     * @param registry    where the limiter's meters go
     */
    public FleetRateLimiter(KageKeys keys, RedissonClient redisson, FailureMode failureMode, MeterRegistry registry) {
        this(keys, redisson, failureMode, registry, false);
    }

    private FleetRateLimiter(KageKeys keys, RedissonClient redisson, FailureMode failureMode, MeterRegistry registry,
                             boolean ownsClient) {
        this.keys = keys;
        this.redisson = redisson;
        this.scripts = redisson.getScript(StringCodec.INSTANCE);
        this.failureMode = failureMode;
        this.ownsClient = ownsClient;
        this.registry = registry;
        this.redisErrors = Counter.builder("kage.ratelimit.redis.errors")
                .description("Limiter calls that could not reach Redis")
                .tag("mode", failureMode.name().toLowerCase())
                .register(registry);
        this.failedOpen = Counter.builder("kage.ratelimit.unchecked.grants")
                .description("Permits handed out without a check because Redis was unreachable (fail-open)")
                .register(registry);
    }

    /**
     * A limiter with its own Redisson client, for tools and benchmarks; {@link #close()} shuts the
     * client down. Fails closed.
     */
    public static FleetRateLimiter connect(String redisUrl, String namespace) {
        return new FleetRateLimiter(new KageKeys(namespace), client(redisUrl), FailureMode.CLOSED, Metrics.globalRegistry, true);
    }

    /**
     * A Redisson client suited to the limiter: script cache on (scripts go as {@code EVALSHA}), and short
     * timeouts so an unreachable Redis is noticed within about two seconds instead of Redisson's default
     * of three retries.
     */
    public static RedissonClient client(String redisUrl) {
        io.lettuce.core.RedisURI uri = io.lettuce.core.RedisURI.create(redisUrl);
        Config config = new Config();
        config.setUseScriptCache(true);
        var server = config.useSingleServer()
                .setAddress((uri.isSsl() ? "rediss://" : "redis://") + uri.getHost() + ":" + uri.getPort())
                .setDatabase(uri.getDatabase())
                .setConnectionMinimumIdleSize(1)
                .setConnectionPoolSize(16)
                .setTimeout(1_000)
                .setRetryAttempts(1)
                .setRetryDelay(new org.redisson.config.ConstantDelay(Duration.ofMillis(500)));
        if (uri.getUsername() != null) {
            server.setUsername(uri.getUsername());
        }
        if (uri.getPassword() != null) {
            server.setPassword(new String(uri.getPassword()));
        }
        return Redisson.create(config);
    }

    /** What the limiter does when Redis cannot be reached. */
    public enum FailureMode {
        /** No permit is handed out until Redis answers again (the default): the provider's limit is never passed. */
        CLOSED,
        /** Permits are handed out unchecked, counted and logged: work goes on, the limit may be passed. */
        OPEN
    }

    /** Why a permit was or was not handed out. */
    public enum Reason {
        GRANTED,
        /** the group is paused fleet-wide after the provider pushed back (429) */
        COOLDOWN,
        /** the window holds as many calls as the (effective) limit allows */
        REQUESTS,
        /** after a 429's pause, the one call that goes first (the probe) is out and its answer is awaited */
        PROBE,
        /** the window holds too many tokens for this call's estimate */
        TOKENS,
        /** what is left is taken by higher-priority callers who are waiting */
        PRIORITY,
        /** Redis cannot be reached and the limiter fails closed */
        UNAVAILABLE,
        /** Redis cannot be reached and the limiter fails open: granted without a check */
        UNCHECKED;

        static Reason of(String wire) {
            return valueOf(wire.toUpperCase());
        }
    }

    /**
     * One answer of the limiter.
     *
     * @param granted    whether the caller may call the provider now
     * @param reason     why
     * @param retryIn    when denied, how long until a permit may be free (or the cooldown ends)
     * @param spread     when denied, a later time up to which waiters spread their next ask
     * @param limit      the group's configured requests per window
     * @param effective  the group's current rate after adaptive decreases, at most {@code limit}
     * @param used       requests granted in the current window (including this one when granted)
     * @param tokensUsed tokens granted in the current window
     * @param grantedAtMicros when granted, the Redis server's time of the grant (µs since the epoch); else 0
     * @param tokensTaken     when granted, the tokens taken from the window
     * @param probe           when granted, whether this is the probe after a 429's pause: the one call that goes first
     *                        while the others wait for its answer, which its caller reports ({@link #answered})
     */
    public record Decision(boolean granted, Reason reason, Duration retryIn, Duration spread, long limit, long effective,
                           long used, long tokensUsed, long grantedAtMicros, long tokensTaken, boolean probe) {

        /** How long a denied caller sleeps: a random point between {@code retryIn} and {@code spread}. */
        public Duration sleep() {
            long from = retryIn.toMillis();
            long to = Math.max(from, spread.toMillis());
            return Duration.ofMillis(from == to ? from : ThreadLocalRandom.current().nextLong(from, to + 1));
        }
    }

    /**
     * A permit taken by {@link #acquire}: how long it took, the final decision, and the caller id it was
     * asked for with (for {@link #markSent}).
     */
    public record Grant(Duration waited, Decision decision, String callerId) {
    }

    /**
     * A limit as stored for the fleet.
     *
     * @param source {@code config} (the agents' configuration) or {@code api} (an operator's runtime change)
     */
    public record Stored(boolean changed, String source, Limit limit) {
    }

    /**
     * What the fleet sees of a group now.
     *
     * @param effective the rate after adaptive decreases (recovers by a tenth of the limit per window)
     * @param cooldown  how long the group stays paused, zero when it is not
     * @param waiting   callers waiting for a permit, per priority
     */
    public record LimitState(String group, Limit limit, String source, long effective, long used, long tokensUsed,
                             Duration cooldown, Map<Priority, Long> waiting, Instant updatedAt) {
    }

    /** The result of slowing a group down. */
    public record SlowDown(Duration pause, boolean lowered, long effective) {
    }

    /**
     * Applies a group's configured limit, as a worker does at start-up: stored for the fleet unless an
     * operator's runtime change ({@link #override}) is in force, which is kept and logged. Also
     * remembered here, so a group whose keys vanished (a Redis restart without persistence) is set up
     * again by the next acquire.
     */
    public Stored configure(String group, Limit limit) {
        configured.put(group, limit);
        Stored stored = store(group, "config", limit);
        if ("api".equals(stored.source()) && !stored.limit().equals(limit)) {
            LOG.info("Rate limit for {}: an operator's runtime limit of {} is in force (configured: {}); "
                    + "DELETE /api/v1/limits/{} returns to the configuration", group, stored.limit().describe(), limit.describe(), group);
        } else if (stored.changed()) {
            LOG.info("Rate limit for {}: {} (tokens per window: {}) for the whole fleet", group, limit.describe(),
                    limit.tokens() == 0 ? "no limit" : limit.tokens());
        }
        return stored;
    }

    /**
     * An operator's runtime change, for the whole fleet at once: permits already granted stay in the
     * window, so a lower limit takes effect at once and a higher one hands out no burst beyond itself.
     */
    public Stored override(String group, Limit limit) {
        Stored stored = store(group, "api", limit);
        LOG.info("Rate limit for {} changed at run time to {} (tokens per window: {})", group, limit.describe(),
                limit.tokens() == 0 ? "no limit" : limit.tokens());
        return stored;
    }

    /** Drops an operator's runtime change: the group goes back to {@code configuredLimit}. */
    /**
     * {@link #override} of a change kept elsewhere (Postgres) and written back into Redis: logged only when Redis did not
     * hold it already.
     */
    public Stored restore(String group, Limit limit) {
        Stored stored = store(group, "api", limit);
        if (stored.changed()) {
            LOG.info("Rate limit for {} restored to its run-time change {} (Redis had lost it)", group, limit.describe());
        }
        return stored;
    }

    public Stored reset(String group, Limit configuredLimit) {
        return store(group, "reset", configuredLimit);
    }

    private Stored store(String group, String mode, Limit limit) {
        List<Object> out = scripts.eval(keys.limiter(group), RScript.Mode.READ_WRITE, CONFIGURE, RScript.ReturnType.MULTI,
                List.of(keys.limiter(group), keys.limiterRequests(group), keys.limiterTokens(group)), mode,
                Long.toString(limit.requests()), Long.toString(limit.window().toMillis()),
                Long.toString(limit.tokens()), Long.toString(limit.guard().toMillis()));
        redisson.getSet(keys.limitGroups(), StringCodec.INSTANCE).add(group);
        return new Stored(number(out.get(0)) == 1, String.valueOf(out.get(1)), new Limit(number(out.get(2)),
                Duration.ofMillis(number(out.get(3))), number(out.get(4)), Duration.ofMillis(number(out.get(5)))));
    }

    /**
     * Asks once for a permit (one request and {@code tokens} tokens).
     *
     * @param callerId a name stable across the caller's asks (a job id): a waiting high-priority caller
     *                 is known by it, and its registration is dropped when it is served
     * @param tokens   estimated tokens of the call, 0 when the group has no token limit or none is known
     * @throws IllegalStateException when the group was never {@link #configure configured} here
     */
    public Decision tryAcquire(String group, String callerId, Priority priority, long tokens) {
        return tryAcquire(group, callerId, priority, tokens, false);
    }

    /**
     * As {@link #tryAcquire(String, String, Priority, long)}; with {@code sendLease} the permit counts from
     * grant + {@link #SEND_LEASE} until the caller calls {@link #markSent} when its call leaves (which it must).
     */
    public Decision tryAcquire(String group, String callerId, Priority priority, long tokens, boolean sendLease) {
        Limit limit = configured.get(group);
        if (limit == null) {
            throw new IllegalStateException("rate limit group '" + group + "' is not configured");
        }
        List<Object> out;
        try {
            out = scripts.eval(keys.limiter(group), RScript.Mode.READ_WRITE, ACQUIRE, RScript.ReturnType.MULTI,
                    List.of(keys.limiter(group), keys.limiterRequests(group), keys.limiterTokens(group), keys.cooldown(group),
                            keys.limiterWaiting(group, Priority.HIGH), keys.limiterWaiting(group, Priority.NORMAL),
                            keys.limiterWaiting(group, Priority.LOW)),
                    callerId, Integer.toString(rank(priority)), Long.toString(Math.max(0, tokens)), Long.toString(WAITER_SLACK_MS),
                    Long.toString(limit.requests()), Long.toString(limit.window().toMillis()), Long.toString(limit.tokens()),
                    Long.toString(limit.guard().toMillis()), Long.toString(sendLease ? SEND_LEASE.toMillis() : 0),
                    Long.toString(PROBE_LEASE.toMillis()));
        } catch (RedisException e) {
            if (!unavailable(e)) {
                throw e;
            }
            return unreachable(group, limit, e);
        }
        if (redisDown.compareAndSet(true, false)) {
            LOG.info("Rate limiter: Redis answers again; permits for {} are checked again", group);
        }
        return new Decision(number(out.get(0)) == 1, Reason.of(String.valueOf(out.get(2))), Duration.ofMillis(number(out.get(1))),
                Duration.ofMillis(number(out.get(6))), number(out.get(3)), number(out.get(4)), number(out.get(5)),
                number(out.get(7)), out.size() > 8 ? number(out.get(8)) : 0, out.size() > 9 ? number(out.get(9)) : 0,
                out.size() > 10 && number(out.get(10)) == 1);
    }

    /**
     * Whether an error means Redis cannot be reached now (then the failure mode decides), as opposed to a
     * script or programming error, which is thrown: fail-open never hides a bug as an outage.
     */
    static boolean unavailable(RedisException e) {
        return e instanceof org.redisson.client.RedisConnectionException || e instanceof org.redisson.client.RedisTimeoutException
                || e instanceof org.redisson.client.RedisRetryException || e instanceof org.redisson.client.RedisReconnectedException
                || e instanceof org.redisson.client.RedisNodeNotFoundException;
    }

    /**
     * Gives a permit back whose call never left (the agent process could not start, the connection was
     * refused): the provider saw nothing. A failure is logged, never thrown (a leased permit is then held
     * for its lease).
     */
    public void release(String group, String callerId, Decision grant) {
        if (grant == null || !grant.granted() || grant.grantedAtMicros() == 0) {
            return;
        }
        String member = callerId + "@" + grant.grantedAtMicros();
        try {
            scripts.eval(keys.limiter(group), RScript.Mode.READ_WRITE, RELEASE, RScript.ReturnType.INTEGER,
                    List.of(keys.limiterRequests(group), keys.limiterTokens(group), keys.limiter(group)), member,
                    grant.tokensTaken() > 0 ? member + "|" + grant.tokensTaken() : "", Long.toString(grant.tokensTaken()));
        } catch (RedisException e) {
            LOG.warn("Rate limit: could not give back the unused permit of {} for {}: {}", callerId, group, e.getMessage());
        }
    }

    private Decision unreachable(String group, Limit limit, RedisException e) {
        redisErrors.increment();
        boolean first = redisDown.compareAndSet(false, true);
        if (failureMode == FailureMode.OPEN) {
            failedOpen.increment();
            if (first) {
                LOG.error("Rate limiter cannot reach Redis ({}); RATE_LIMIT_ON_REDIS_ERROR=open: permits for {} and every other "
                        + "group are handed out UNCHECKED until it answers; the provider's limit may be passed", e.getMessage(), group);
            }
            return new Decision(true, Reason.UNCHECKED, Duration.ZERO, Duration.ZERO, limit.requests(), limit.requests(), 0, 0, 0, 0, false);
        }
        if (first) {
            LOG.error("Rate limiter cannot reach Redis ({}); RATE_LIMIT_ON_REDIS_ERROR=closed: no permit for {} or any other "
                    + "group until it answers", e.getMessage(), group);
        }
        return new Decision(false, Reason.UNAVAILABLE, UNAVAILABLE_RETRY, UNAVAILABLE_RETRY, limit.requests(), limit.requests(), 0, 0, 0, 0, false);
    }

    /**
     * Says that the call a permit was granted for has just left for the provider: the permit is stamped
     * with the Redis server's time, so it is held for a full window (plus guard) after the provider sees
     * the call, however long the call took to leave after its grant (a cold HTTP client's first connection,
     * a process start on a loaded machine). Sent without waiting for the answer: a stamp that lands late
     * holds the permit longer, which errs on the safe side. A failure is logged, never thrown (a leased
     * permit is then held for its lease).
     *
     * @param callerId the id the permit was asked for with
     * @param grant    the decision that granted it
     */
    public void markSent(String group, String callerId, Decision grant) {
        if (!grant.granted() || grant.grantedAtMicros() == 0) {
            return;
        }
        String member = callerId + "@" + grant.grantedAtMicros();
        String tokensMember = grant.tokensTaken() > 0 ? member + "|" + grant.tokensTaken() : "";
        stamp(group, callerId, member, tokensMember, true);
    }

    /** Sends the stamp; a failed one is tried once more (later is still safe), then logged. */
    private void stamp(String group, String callerId, String member, String tokensMember, boolean again) {
        try {
            scripts.<Long>evalAsync(keys.limiter(group), RScript.Mode.READ_WRITE, SENT, RScript.ReturnType.INTEGER,
                    List.of(keys.limiterRequests(group), keys.limiterTokens(group)), member, tokensMember)
                    .whenComplete((stamped, error) -> {
                        if (error == null) {
                            return;
                        }
                        if (again) {
                            stamp(group, callerId, member, tokensMember, false);
                        } else {
                            LOG.warn("Rate limit: could not stamp the permit of {} for {} as sent ({}); it is held for its "
                                    + "lease", callerId, group, error.getMessage());
                        }
                    });
        } catch (RedisException e) {
            LOG.warn("Rate limit: could not stamp the permit of {} for {} as sent: {}", callerId, group, e.getMessage());
        }
    }

    /**
     * Waits for a permit as long as it takes. Logs one line when it has to wait (the seed's
     * "Rate limit: 50/50 RPM. Waiting 5.2s..."), never one per ask.
     *
     * @throws InterruptedException when the caller is interrupted while waiting
     */
    public Grant acquire(String group, Priority priority, long tokens) throws InterruptedException {
        return acquire(group, priority, tokens, false);
    }

    /**
     * As {@link #acquire(String, Priority, long)}; with {@code sendLease} the permit is leased until the caller
     * calls {@link #markSent} with the grant when its call leaves (see {@link #SEND_LEASE}).
     */
    public Grant acquire(String group, Priority priority, long tokens, boolean sendLease) throws InterruptedException {
        String callerId = UUID.randomUUID().toString();
        long started = System.nanoTime();
        boolean logged = false;
        while (true) {
            Decision decision = tryAcquire(group, callerId, priority, tokens, sendLease);
            if (decision.granted()) {
                Duration waited = Duration.ofNanos(System.nanoTime() - started);
                recordWait(group, waited);
                return new Grant(waited, decision, callerId);
            }
            if (!logged) {
                logWait(group, decision, decision.retryIn());
                logged = true;
            }
            // Blocking is what this method is for; the script says when a permit may be free, so this is no poll loop.
            Thread.sleep(decision.sleep());
        }
    }

    /**
     * Records how long a caller waited for a granted permit ({@code kage_ratelimit_wait_seconds{group}}, zero waits
     * included), for callers that wait in their own loop instead of {@link #acquire}.
     */
    public void recordWait(String group, Duration waited) {
        Timer.builder("kage.ratelimit.wait").description("How long callers waited for a granted rate-limit permit")
                .tag("group", group).register(registry).record(waited);
    }

    /** Logs a wait the way the seed does, once per wait: "Rate limit: 50/50 RPM. Waiting 5.2s... (group claude-code)". */
    public void logWait(String group, Decision decision, Duration wait) {
        Limit limit = configured.get(group);
        String per = limit == null ? "" : limit.window().equals(Duration.ofMinutes(1)) ? " RPM" : " per " + Limit.human(limit.window());
        String seconds = String.format("%.1f", wait.toMillis() / 1000.0);
        switch (decision.reason()) {
            case COOLDOWN -> LOG.info("Rate limit: {} is cooling down after a 429. Waiting {}s...", group, seconds);
            case PROBE -> LOG.info("Rate limit: {} sent its first call after a 429's pause; waiting for its answer...", group);
            case UNAVAILABLE -> LOG.info("Rate limit: {} cannot be checked (Redis unreachable). Waiting...", group);
            case TOKENS -> LOG.info("Rate limit: {} tokens{} used for {}. Waiting {}s...", decision.tokensUsed(),
                    limit == null ? "" : "/" + limit.tokens(), group, seconds);
            default -> LOG.info("Rate limit: {}/{}{}. Waiting {}s... ({}{})", decision.used(), decision.effective(), per, seconds,
                    group, decision.reason() == Reason.PRIORITY ? ", higher-priority work waiting" : "");
        }
    }

    /**
     * The provider answered 429 (or overloaded): pauses the group for the whole fleet for {@code pause}
     * (kept when a longer pause is already in force) and halves its effective rate when no pause is in force and
     * it was not lowered within the last window: many workers seeing one burst of 429s, or a storm of 429s with
     * short {@code Retry-After}s (a new pause every few seconds), lower it once per window, not once per pause.
     */
    public SlowDown coolDown(String group, Duration pause) {
        return slowDown(group, pause, 0.5, "episode");
    }

    /**
     * The provider answered a call without pushing back (no 429): when that call was the probe after a 429's pause
     * ({@link Decision#probe}), the group opens again for the whole fleet. Otherwise nothing is sent. A failure is
     * logged, never thrown (the others then wait out {@link #PROBE_LEASE}).
     */
    public void answered(String group, Decision grant) {
        if (grant == null || !grant.granted() || !grant.probe()) {
            return;
        }
        try {
            long opened = scripts.<Long>eval(keys.limiter(group), RScript.Mode.READ_WRITE, ANSWERED, RScript.ReturnType.INTEGER,
                    List.of(keys.limiter(group)), Long.toString(grant.grantedAtMicros()));
            if (opened == 1) {
                LOG.info("Rate limit for {}: the provider answered the first call after the pause; open again", group);
            }
        } catch (RedisException e) {
            LOG.warn("Rate limit for {}: could not record the probe's answer ({}); the others wait out its lease", group,
                    e.getMessage());
        }
    }

    /**
     * What a group could grant within a horizon, for a claim loop deciding how many jobs to take: a job it claims
     * beyond this could only wait in its slot past the horizon or go to the delayed set and come back (churn; in a 429
     * storm, a hot loop).
     *
     * @param cooldown  how long the fleet-wide pause after a 429 still lasts; zero when none
     * @param free      callers that could get a request permit within the horizon: the effective rate minus the
     *                  permits held, plus those released within the horizon, minus the callers already waiting for one;
     *                  zero or less when none
     * @param lookAgain when the next permit held beyond the horizon comes within it (zero when none is)
     */
    public record Headroom(Duration cooldown, long free, Duration lookAgain) {
        /** A group nobody has set up yet: the first permit asked for sets it up, so nothing holds a claim back. */
        public static final Headroom UNKNOWN = new Headroom(Duration.ZERO, Long.MAX_VALUE, Duration.ZERO);
    }

    /**
     * The group's {@link Headroom} now (one read-only script; request permits only, not tokens). A Redis error
     * propagates: the caller decides.
     *
     * @param horizon how long a caller may wait for its permit (a job in its slot: {@code RATE_LIMIT_MAX_SLOT_WAIT_SECONDS})
     */
    public Headroom headroom(String group, Duration horizon) {
        List<Object> out = scripts.eval(keys.limiter(group), RScript.Mode.READ_WRITE, HEADROOM, RScript.ReturnType.MULTI,
                List.of(keys.limiter(group), keys.limiterRequests(group), keys.cooldown(group),
                        keys.limiterWaiting(group, Priority.HIGH), keys.limiterWaiting(group, Priority.NORMAL),
                        keys.limiterWaiting(group, Priority.LOW)), Long.toString(Math.max(0, horizon.toMillis())),
                Long.toString(PROBE_LEASE.toMillis()));
        if (number(out.get(0)) == 0) {
            return Headroom.UNKNOWN;
        }
        return new Headroom(Duration.ofMillis(number(out.get(1))), number(out.get(2)), Duration.ofMillis(number(out.get(3))));
    }

    /**
     * The provider's rate-limit headers (x-ratelimit-remaining-requests, anthropic-ratelimit-requests-remaining)
     * report what is left of its own quota. Nearly spent (under a tenth left): the effective rate is
     * lowered by a fifth, at most once per window (a 429's halving counts). Spent with a reset time: the group
     * pauses until then.
     */
    public Optional<SlowDown> observeQuota(String group, long remaining, long providerLimit, Duration reset) {
        if (providerLimit <= 0 || remaining < 0) {
            return Optional.empty();
        }
        if (remaining == 0 && reset != null && reset.isPositive()) {
            return Optional.of(slowDown(group, reset, 0.8, "window"));
        }
        if (remaining * 10 < providerLimit) {
            return Optional.of(slowDown(group, Duration.ZERO, 0.8, "window"));
        }
        return Optional.empty();
    }

    /**
     * Never throws: the provider's answer that brought this news is worth more than the news, so a Redis
     * error here is logged and counted, and the answer is kept.
     */
    private SlowDown slowDown(String group, Duration pause, double factor, String mode) {
        Duration bounded = pause.isNegative() ? Duration.ZERO : pause.compareTo(MAX_PAUSE) > 0 ? MAX_PAUSE : pause;
        if (bounded != pause) {
            LOG.warn("Rate limit for {}: the provider asked for a pause of {} ms; pausing {} ms", group, pause.toMillis(),
                    bounded.toMillis());
        }
        List<Object> out;
        try {
            out = scripts.eval(keys.limiter(group), RScript.Mode.READ_WRITE, SLOW_DOWN, RScript.ReturnType.MULTI,
                    List.of(keys.limiter(group), keys.cooldown(group), keys.limiterRequests(group)), Long.toString(bounded.toMillis()),
                    Double.toString(factor), mode);
        } catch (RedisException e) {
            redisErrors.increment();
            LOG.error("Rate limit for {}: could not record the provider's push-back (pause {} ms): {}", group,
                    bounded.toMillis(), e.getMessage());
            return new SlowDown(bounded, false, 0);
        }
        SlowDown result = new SlowDown(Duration.ofMillis(number(out.get(0))), number(out.get(1)) == 1, number(out.get(2)));
        if (result.lowered()) {
            LOG.warn("Rate limit for {}: provider pushed back; fleet-wide pause {} ms, effective rate lowered to {} per window",
                    group, result.pause().toMillis(), result.effective());
        }
        return result;
    }

    /** The group as the fleet sees it, or empty when no worker or operator has set it up. */
    public Optional<LimitState> state(String group) {
        List<Object> out = scripts.eval(keys.limiter(group), RScript.Mode.READ_WRITE, STATE, RScript.ReturnType.MULTI,
                List.of(keys.limiter(group), keys.limiterRequests(group), keys.limiterTokens(group), keys.cooldown(group),
                        keys.limiterWaiting(group, Priority.HIGH), keys.limiterWaiting(group, Priority.NORMAL),
                        keys.limiterWaiting(group, Priority.LOW)));
        if (number(out.get(0)) == 0) {
            return Optional.empty();
        }
        Map<Priority, Long> waiting = new EnumMap<>(Priority.class);
        waiting.put(Priority.HIGH, number(out.get(10)));
        waiting.put(Priority.NORMAL, number(out.get(11)));
        waiting.put(Priority.LOW, number(out.get(12)));
        Limit limit = new Limit(number(out.get(1)), Duration.ofMillis(number(out.get(2))), number(out.get(3)),
                Duration.ofMillis(number(out.get(4))));
        return Optional.of(new LimitState(group, limit, String.valueOf(out.get(5)), number(out.get(6)), number(out.get(7)),
                number(out.get(8)), Duration.ofMillis(number(out.get(9))), waiting, Instant.ofEpochMilli(number(out.get(13)))));
    }

    /** Every group a worker or an operator has set up, sorted. */
    public List<String> groups() {
        List<String> groups = new ArrayList<>(redisson.<String>getSet(keys.limitGroups(), StringCodec.INSTANCE).readAll());
        groups.sort(null);
        return groups;
    }

    /** The limit this process configured for {@code group}, if any. */
    public Optional<Limit> configuredLimit(String group) {
        return Optional.ofNullable(configured.get(group));
    }

    public FailureMode failureMode() {
        return failureMode;
    }

    @Override
    public void close() {
        if (ownsClient) {
            redisson.shutdown();
        }
    }

    private static int rank(Priority priority) {
        return switch (priority) {
            case HIGH -> 0;
            case NORMAL -> 1;
            case LOW -> 2;
        };
    }

    private static long number(Object value) {
        if (value instanceof Number n) {
            return n.longValue();
        }
        return Long.parseLong(String.valueOf(value));
    }

    /** A script from beside this class, with {@code common.lua} (the helpers the scripts share) in front. */
    private static String script(String name) {
        return read("common.lua") + "\n" + read(name);
    }

    private static String read(String name) {
        try (InputStream in = FleetRateLimiter.class.getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException("Lua script " + name + " missing beside " + FleetRateLimiter.class.getName());
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
