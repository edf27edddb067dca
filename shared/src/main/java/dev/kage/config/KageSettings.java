package dev.kage.config;

import io.lettuce.core.RedisURI;
import java.util.regex.Pattern;

/**
 * Settings both the coordinator and the workers read, with the seed's variable names and defaults.
 * Immutable and thread-safe; built once at start-up by {@link #load(Env)}, which fails with a
 * {@link ConfigException} naming the variable when a value is bad.
 *
 * @param namespace             prefix of every Redis key ({@code KAGE_NAMESPACE}, default {@code kage})
 * @param redisUrl              {@code REDIS_URL}
 * @param database              {@code DATABASE_URL}, libpq or JDBC form
 * @param dbSchema              Postgres schema holding Kage's tables ({@code KAGE_DB_SCHEMA}, default {@code development_docs})
 * @param dbSocketTimeoutSeconds how long a statement waits for Postgres's answer before its connection counts as broken
 *                              ({@code KAGE_DB_SOCKET_TIMEOUT_SECONDS}, seconds, 0 = forever, default 60)
 * @param maxTokensPerTask      {@code MAX_TOKENS_PER_TASK}, tokens, default 50000
 * @param tokenWarningThreshold {@code TOKEN_WARNING_THRESHOLD}, fraction of a budget, default 0.8
 * @param maxRequestsPerMinute  {@code MAX_REQUESTS_PER_MINUTE}, per agent across the fleet, default 50
 * @param backoffBaseSeconds    {@code RATE_LIMIT_BACKOFF_BASE}, seconds, default 1.0
 * @param backoffMaxSeconds     {@code RATE_LIMIT_BACKOFF_MAX}, seconds, default 60
 * @param rateLimitMaxRetries   {@code RATE_LIMIT_MAX_RETRIES}, default 5
 * @param defaultCliTimeout     {@code DEFAULT_CLI_TIMEOUT}, seconds, default 300
 * @param maxParallelClis       {@code MAX_PARALLEL_CLIS}, agent processes one worker runs at once, default 5
 * @param worktreeCleanupDays   {@code WORKTREE_CLEANUP_DAYS}, default 7
 * @param maxActiveWorktrees    {@code MAX_ACTIVE_WORKTREES}, per worker, default 50
 * @param baseBranch            {@code BASE_BRANCH}, default {@code main}
 * @param budgetMode            {@code BUDGET_MODE}, {@code log} (default, the seed's behaviour) or {@code enforce}
 * @param queue                 delivery, reclaim, retry and trimming settings
 * @param rateLimit             fleet-wide rate limits and 429 handling (defaults for every limit group)
 * @param budget                tenants' period budgets and reservation lifetimes
 */
public record KageSettings(
        String namespace,
        String redisUrl,
        DatabaseUrl database,
        String dbSchema,
        int dbSocketTimeoutSeconds,
        long maxTokensPerTask,
        double tokenWarningThreshold,
        int maxRequestsPerMinute,
        double backoffBaseSeconds,
        double backoffMaxSeconds,
        int rateLimitMaxRetries,
        int defaultCliTimeout,
        int maxParallelClis,
        int worktreeCleanupDays,
        int maxActiveWorktrees,
        String baseBranch,
        BudgetMode budgetMode,
        QueueSettings queue,
        RateLimitSettings rateLimit,
        BudgetSettings budget) {

    public static final String DEFAULT_NAMESPACE = "kage";
    public static final String DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
    public static final String DEFAULT_SCHEMA = "development_docs";
    public static final int DEFAULT_DB_SOCKET_TIMEOUT_SECONDS = 60;
    public static final long DEFAULT_MAX_TOKENS_PER_TASK = 50_000;
    public static final double DEFAULT_TOKEN_WARNING_THRESHOLD = 0.8;
    public static final int DEFAULT_MAX_REQUESTS_PER_MINUTE = 50;
    public static final double DEFAULT_BACKOFF_BASE = 1.0;
    public static final double DEFAULT_BACKOFF_MAX = 60.0;
    public static final int DEFAULT_MAX_RETRIES = 5;
    public static final int DEFAULT_CLI_TIMEOUT = 300;
    public static final int DEFAULT_MAX_PARALLEL_CLIS = 5;
    public static final int DEFAULT_WORKTREE_CLEANUP_DAYS = 7;
    public static final int DEFAULT_MAX_ACTIVE_WORKTREES = 50;
    public static final String DEFAULT_BASE_BRANCH = "main";

    /** Longest timeout a task may ask for: one day. */
    public static final int MAX_CLI_TIMEOUT = 86_400;

    private static final Pattern NAMESPACE = Pattern.compile("[A-Za-z0-9_.-]{1,64}");
    private static final Pattern SCHEMA = Pattern.compile("[a-z_][a-z0-9_]{0,62}");

    public static KageSettings load(Env env) {
        String namespace = env.string("KAGE_NAMESPACE", DEFAULT_NAMESPACE);
        if (!NAMESPACE.matcher(namespace).matches()) {
            throw new ConfigException("KAGE_NAMESPACE=" + namespace + ": must be 1-64 letters, digits, '.', '_' or '-'");
        }
        String redisUrl = env.string("REDIS_URL", DEFAULT_REDIS_URL);
        RedisURI redisUri;
        try {
            redisUri = RedisURI.create(redisUrl);
        } catch (RuntimeException e) {
            throw new ConfigException("REDIS_URL: not a Redis URL (" + parseFailure(e) + "); expected e.g. " + DEFAULT_REDIS_URL);
        }
        // The rate limiter's Redisson client is built from the host and port: a sentinel or socket URL, which Lettuce
        // takes, has no host, and the worker failed after it had connected everything else.
        if (!(redisUrl.startsWith("redis://") || redisUrl.startsWith("rediss://")) || redisUri.getHost() == null
                || redisUri.getHost().isBlank()) {
            throw new ConfigException("REDIS_URL: must be a redis:// or rediss:// URL with a host (sentinel and socket URLs "
                    + "are not supported); expected e.g. " + DEFAULT_REDIS_URL);
        }
        env.get("KAGE_LOG_LEVEL").map(level -> level.trim().toUpperCase(java.util.Locale.ROOT)).ifPresent(level -> {
            // Logback reads any other word as DEBUG: a typo would flood the log (and show what DEBUG shows).
            if (!LOG_LEVELS.contains(level)) {
                throw new ConfigException("KAGE_LOG_LEVEL=" + env.get("KAGE_LOG_LEVEL").orElse("") + ": must be one of "
                        + String.join(", ", LOG_LEVELS));
            }
        });
        DatabaseUrl database = DatabaseUrl.parse("DATABASE_URL", env.string("DATABASE_URL", DatabaseUrl.DEFAULT));
        String schema = env.string("KAGE_DB_SCHEMA", DEFAULT_SCHEMA);
        if (!SCHEMA.matcher(schema).matches()) {
            throw new ConfigException("KAGE_DB_SCHEMA=" + schema + ": must be a lower-case SQL identifier, e.g. " + DEFAULT_SCHEMA);
        }
        int timeout = env.positiveInt("DEFAULT_CLI_TIMEOUT", DEFAULT_CLI_TIMEOUT);
        if (timeout > MAX_CLI_TIMEOUT) {
            throw new ConfigException("DEFAULT_CLI_TIMEOUT=" + timeout + ": must be at most " + MAX_CLI_TIMEOUT + " seconds");
        }
        double backoffBase = backoffSeconds(env, "RATE_LIMIT_BACKOFF_BASE", DEFAULT_BACKOFF_BASE);
        double backoffMax = backoffSeconds(env, "RATE_LIMIT_BACKOFF_MAX", DEFAULT_BACKOFF_MAX);
        if (backoffMax < backoffBase) {
            throw new ConfigException("RATE_LIMIT_BACKOFF_MAX=" + backoffMax + ": must not be below RATE_LIMIT_BACKOFF_BASE=" + backoffBase);
        }
        String baseBranch = env.string("BASE_BRANCH", DEFAULT_BASE_BRANCH);
        if (!GitRefs.isValidBranchName(baseBranch)) {
            throw new ConfigException("BASE_BRANCH=" + baseBranch + ": not a valid git branch name");
        }
        int requestsPerWindow = env.positiveInt("MAX_REQUESTS_PER_MINUTE", DEFAULT_MAX_REQUESTS_PER_MINUTE);
        // 0: the first 429 fails the job (the seed's behaviour before its retries).
        int maxRetries = env.intBetween("RATE_LIMIT_MAX_RETRIES", 0, 1_000_000, DEFAULT_MAX_RETRIES);
        return new KageSettings(
                namespace,
                redisUrl,
                database,
                schema,
                env.intBetween("KAGE_DB_SOCKET_TIMEOUT_SECONDS", 0, 3_600, DEFAULT_DB_SOCKET_TIMEOUT_SECONDS),
                env.longBetween("MAX_TOKENS_PER_TASK", 1, BudgetSettings.MAX_TOKENS, DEFAULT_MAX_TOKENS_PER_TASK),
                env.fraction("TOKEN_WARNING_THRESHOLD", DEFAULT_TOKEN_WARNING_THRESHOLD),
                requestsPerWindow,
                backoffBase,
                backoffMax,
                maxRetries,
                timeout,
                env.positiveInt("MAX_PARALLEL_CLIS", DEFAULT_MAX_PARALLEL_CLIS),
                env.positiveInt("WORKTREE_CLEANUP_DAYS", DEFAULT_WORKTREE_CLEANUP_DAYS),
                env.positiveInt("MAX_ACTIVE_WORKTREES", DEFAULT_MAX_ACTIVE_WORKTREES),
                baseBranch,
                env.oneOf("BUDGET_MODE", BudgetMode.class, BudgetMode.LOG),
                QueueSettings.load(env),
                RateLimitSettings.load(env, requestsPerWindow, backoffBase, backoffMax, maxRetries),
                BudgetSettings.load(env));
    }

    /**
     * A backoff in seconds, from a millisecond to a day: a smaller one was rounded to 0 ms (no pause at all after a 429,
     * for the job or the fleet), a larger one overflowed the arithmetic on instants.
     */
    private static double backoffSeconds(Env env, String name, double defaultValue) {
        double seconds = env.positiveDouble(name, defaultValue);
        if (seconds < 0.001 || seconds > 86_400) {
            throw new ConfigException(name + "=" + env.get(name).orElse("") + ": must be a number of seconds from 0.001 to 86400");
        }
        return seconds;
    }

    /** The levels {@code KAGE_LOG_LEVEL} may name (case does not matter). */
    static final java.util.List<String> LOG_LEVELS = java.util.List.of("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF");

    /**
     * Why a URL did not parse, without the URL: the parser's message quotes its input, password included (a password
     * with a '%' or a '^' fails to parse, and start-up logged it). A {@link java.net.URISyntaxException}'s reason names
     * the problem alone; any other message is shown with URLs' credentials masked.
     */
    static String parseFailure(Throwable e) {
        for (Throwable cause = e; cause != null; cause = cause.getCause()) {
            if (cause instanceof java.net.URISyntaxException syntax) {
                return syntax.getReason() + " at index " + syntax.getIndex();
            }
        }
        return dev.kage.task.UrlCredentials.mask(String.valueOf(e.getMessage()));
    }

    /** The settings as they may be logged: {@code REDIS_URL}'s credentials masked ({@link DatabaseUrl} masks its own). */
    @Override
    public String toString() {
        return "KageSettings[namespace=" + namespace + ", redisUrl=" + dev.kage.task.UrlCredentials.mask(redisUrl)
                + ", database=" + database + ", dbSchema=" + dbSchema + ", dbSocketTimeoutSeconds=" + dbSocketTimeoutSeconds
                + ", maxTokensPerTask=" + maxTokensPerTask + ", tokenWarningThreshold=" + tokenWarningThreshold
                + ", maxRequestsPerMinute=" + maxRequestsPerMinute + ", backoffBaseSeconds=" + backoffBaseSeconds
                + ", backoffMaxSeconds=" + backoffMaxSeconds + ", rateLimitMaxRetries=" + rateLimitMaxRetries
                + ", defaultCliTimeout=" + defaultCliTimeout + ", maxParallelClis=" + maxParallelClis
                + ", worktreeCleanupDays=" + worktreeCleanupDays + ", maxActiveWorktrees=" + maxActiveWorktrees
                + ", baseBranch=" + baseBranch + ", budgetMode=" + budgetMode + ", queue=" + queue + ", rateLimit=" + rateLimit
                + ", budget=" + budget + "]";
    }
}
