package dev.kage.agent;

import dev.kage.config.RateLimitSettings;
import dev.kage.ratelimit.Limit;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An agent's rate limits and how it says it was rate limited, from the {@code limits:} and
 * {@code rate_limit_signals:} sections of its configuration. Immutable.
 *
 * <pre>
 *   limits:
 *     group: anthropic-org   # agents billing one provider account share one limit (default: the agent's name)
 *     requests: 50           # per window (default MAX_REQUESTS_PER_MINUTE)
 *     window_seconds: 60     # default RATE_LIMIT_WINDOW_SECONDS
 *     tokens: 400000         # per window (TPM for a minute); default none
 *     guard_ms: 100          # default RATE_LIMIT_GUARD_MS
 *   rate_limit_signals:      # a failed run matching these was rate limited (not a failed attempt)
 *     exit_codes: [75]
 *     patterns: ["rate_limit_error", "\\b429\\b"]
 * </pre>
 *
 * @param group       the limit group
 * @param requests    requests per window, empty for the default
 * @param window      the window, empty for the default
 * @param tokens      tokens per window, 0 for none
 * @param guard       the guard, empty for the default
 * @param exitCodes   exit codes that mean "rate limited"
 * @param patterns    patterns of the output of a failed run that mean "rate limited"
 */
public record AgentLimits(String group, Optional<Long> requests, Optional<Duration> window, long tokens,
                          Optional<Duration> guard, Set<Integer> exitCodes, List<Pattern> patterns) {

    /**
     * What CLIs and APIs print when the provider rate limits or is overloaded: its error types and
     * status lines, not any mention of "429" or "rate limit" (a failing test at {@code Foo.java:429}, or a
     * task about a rate limiter, is not a rate-limit signal).
     */
    public static final List<Pattern> DEFAULT_PATTERNS = List.of(Pattern.compile(
            "rate_limit_error|overloaded_error|RESOURCE_EXHAUSTED|(?i:too many requests)|(?i:rate limit(?:ed| exceeded| reached))"
                    + "|(?i:(?:status|code|error|http)[\"':= ]{1,3}(?:429|529)\\b)|(?i:\\b(?:429|529) (?:too many requests|overloaded))"));

    /** {@code Retry-After: 3}, {@code "retry_after": 2.5}, {@code retry-after=10} in an agent's output. */
    private static final Pattern RETRY_AFTER = Pattern.compile("(?i)retry[-_ ]after[\"']?\\s*[:=]\\s*\"?(\\d+(?:\\.\\d+)?)");

    public AgentLimits {
        exitCodes = Set.copyOf(exitCodes);
        patterns = List.copyOf(patterns);
    }

    /** The defaults for an agent: its own group, the fleet's default limit, the default signals. */
    public static AgentLimits defaults(String agent) {
        return new AgentLimits(agent, Optional.empty(), Optional.empty(), 0, Optional.empty(), Set.of(), DEFAULT_PATTERNS);
    }

    /** The limit this agent's group gets, with the fleet's defaults filled in. */
    public Limit resolve(RateLimitSettings defaults) {
        Duration w = window.orElse(defaults.window());
        return new Limit(requests.orElse(defaults.requestsPerWindow()), w, tokens, guard.orElseGet(() -> defaults.guardFor(w)));
    }

    /**
     * Whether a failed run's exit code or output says it was rate limited. Only failed runs are asked:
     * an answer that talks about rate limits is not a rate-limit signal.
     */
    public boolean signalled(int exitCode, String output) {
        if (exitCodes.contains(exitCode)) {
            return true;
        }
        if (output == null) {
            return false;
        }
        for (Pattern pattern : patterns) {
            if (pattern.matcher(output).find()) {
                return true;
            }
        }
        return false;
    }

    /** A {@code Retry-After} the output names, if any. */
    public static Optional<Duration> retryAfter(String output) {
        if (output == null) {
            return Optional.empty();
        }
        Matcher matcher = RETRY_AFTER.matcher(output);
        if (!matcher.find()) {
            return Optional.empty();
        }
        double seconds = Double.parseDouble(matcher.group(1));
        return Optional.of(Duration.ofMillis((long) Math.min(seconds * 1000, 86_400_000)));
    }
}
