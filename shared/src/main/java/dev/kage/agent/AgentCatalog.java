package dev.kage.agent;

import dev.kage.config.ConfigException;
import dev.kage.budget.PeriodLimits;
import dev.kage.tokens.Prices;
import dev.kage.tokens.TokenCounter;
import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;

/**
 * The agents the operator configured, read from the YAML file named by {@code KAGE_AGENTS_FILE}.
 * Only these agents can run: a task names one of them, never a command. Immutable and thread-safe.
 *
 * <pre>
 * agents:
 *   claude-code:
 *     type: command
 *     argv: ["./demo-agent", "-p", "{prompt}", "--output-format", "json"]
 *     output: claude-json
 *     env: [ANTHROPIC_API_KEY]
 *     model: claude-sonnet-4-5
 *   bench:
 *     type: noop          # completes at once with zero usage; no argv
 * </pre>
 */
public final class AgentCatalog {
    public static final String VARIABLE = "KAGE_AGENTS_FILE";
    public static final String DEFAULT_ENCODING = "o200k_base";
    public static final long DEFAULT_ESTIMATED_OUTPUT_TOKENS = 4_000;

    private static final Set<String> KEYS = Set.of("type", "argv", "output", "env", "model", "encoding",
            "estimated_output_tokens", "prices", "budget", "retry", "limits", "rate_limit_signals", "base_url", "api_key_env", "max_tokens");

    private final Map<String, AgentConfig> agents;

    public AgentCatalog(Collection<AgentConfig> agents) {
        Map<String, AgentConfig> byName = new LinkedHashMap<>();
        for (AgentConfig agent : agents) {
            byName.put(agent.name(), agent);
        }
        this.agents = Map.copyOf(byName);
    }

    public Optional<AgentConfig> find(String name) {
        return Optional.ofNullable(agents.get(name));
    }

    public AgentConfig require(String name) {
        return find(name).orElseThrow(() -> new ConfigException("agent '" + name + "' is not configured in " + VARIABLE));
    }

    /** Agent names, sorted. */
    public List<String> names() {
        return agents.keySet().stream().sorted().toList();
    }

    /**
     * Loads the file; every problem is reported with the variable, the file and the agent.
     *
     * @throws ConfigException when the file is missing, is not YAML, or an agent is misconfigured
     */
    public static AgentCatalog load(Path file) {
        String where = VARIABLE + "=" + file;
        if (!Files.isRegularFile(file)) {
            throw new ConfigException(where + ": file not found; point it at an agents.yml such as ops/agents/agents.yml");
        }
        Object root;
        try (Reader reader = Files.newBufferedReader(file)) {
            root = new Yaml(new SafeConstructor(new LoaderOptions())).load(reader);
        } catch (IOException | RuntimeException e) {
            throw new ConfigException(where + ": cannot be read as YAML: " + e.getMessage());
        }
        if (!(root instanceof Map<?, ?> top) || !(top.get("agents") instanceof Map<?, ?> entries) || entries.isEmpty()) {
            throw new ConfigException(where + ": must contain a non-empty 'agents:' mapping of name to settings");
        }
        Path baseDir = file.toAbsolutePath().getParent();
        List<AgentConfig> agents = new ArrayList<>();
        for (Map.Entry<?, ?> entry : entries.entrySet()) {
            String name = String.valueOf(entry.getKey());
            String prefix = where + ": agent '" + name + "': ";
            if (!AgentConfig.NAME.matcher(name).matches()) {
                throw new ConfigException(prefix + "name must be lower-case letters, digits, '-' or '_' (at most 64)");
            }
            if (!(entry.getValue() instanceof Map<?, ?> settings)) {
                throw new ConfigException(prefix + "settings must be a mapping (type, argv, output, ...)");
            }
            agents.add(parseAgent(prefix, name, settings, baseDir));
        }
        checkGroups(where, agents);
        return new AgentCatalog(agents);
    }

    /** Agents sharing a limit group must not name different limits for it: the provider has one. */
    private static void checkGroups(String where, List<AgentConfig> agents) {
        Map<String, AgentConfig> first = new LinkedHashMap<>();
        for (AgentConfig agent : agents) {
            AgentLimits limits = agent.limits();
            AgentConfig other = first.putIfAbsent(limits.group(), agent);
            if (other == null) {
                continue;
            }
            AgentLimits seen = other.limits();
            boolean conflict = (limits.requests().isPresent() && seen.requests().isPresent() && !limits.requests().equals(seen.requests()))
                    || (limits.window().isPresent() && seen.window().isPresent() && !limits.window().equals(seen.window()))
                    || (limits.guard().isPresent() && seen.guard().isPresent() && !limits.guard().equals(seen.guard()))
                    || (limits.tokens() != 0 && seen.tokens() != 0 && limits.tokens() != seen.tokens());
            if (conflict) {
                throw new ConfigException(where + ": agents '" + other.name() + "' and '" + agent.name() + "' share limit group '"
                        + limits.group() + "' but configure different limits for it; set the limits on one of them only, or make them equal");
            }
        }
    }

    /**
     * The limit each group gets: the limits its agents configure (they agree, see {@link #load}), the
     * fleet's defaults for the rest.
     */
    public Map<String, dev.kage.ratelimit.Limit> limitGroups(dev.kage.config.RateLimitSettings defaults) {
        Map<String, AgentLimits> merged = new java.util.TreeMap<>();
        for (AgentConfig agent : agents.values()) {
            AgentLimits limits = agent.limits();
            merged.merge(limits.group(), limits, (a, b) -> new AgentLimits(a.group(), a.requests().or(b::requests),
                    a.window().or(b::window), a.tokens() != 0 ? a.tokens() : b.tokens(), a.guard().or(b::guard), Set.of(),
                    List.of()));
        }
        Map<String, dev.kage.ratelimit.Limit> resolved = new LinkedHashMap<>();
        merged.forEach((group, limits) -> resolved.put(group, limits.resolve(defaults)));
        return resolved;
    }

    /** The limit of the group {@code agent} belongs to. */
    public dev.kage.ratelimit.Limit limitOf(String agent, dev.kage.config.RateLimitSettings defaults) {
        return limitGroups(defaults).get(require(agent).limits().group());
    }

    private static AgentConfig parseAgent(String prefix, String name, Map<?, ?> raw, Path baseDir) {
        @SuppressWarnings("unchecked")
        Map<Object, Object> settings = (Map<Object, Object>) raw;
        for (Object key : settings.keySet()) {
            if (!KEYS.contains(String.valueOf(key))) {
                throw new ConfigException(prefix + "unknown setting '" + key + "' (known: " + KEYS.stream().sorted().toList() + ")");
            }
        }
        AgentType type;
        try {
            type = AgentType.fromWireName(String.valueOf(settings.getOrDefault("type", "command")));
        } catch (IllegalArgumentException e) {
            throw new ConfigException(prefix + e.getMessage());
        }
        // A noop or HTTP agent runs no program: whatever argv it is given is ignored.
        List<String> argv = type != AgentType.COMMAND ? List.of() : stringList(prefix, "argv", settings.get("argv"));
        if (type == AgentType.COMMAND && (argv.isEmpty() || argv.getFirst().isBlank())) {
            throw new ConfigException(prefix + "argv must be a non-empty list whose first element is the program");
        }
        if (type == AgentType.COMMAND && argv.stream().noneMatch(a -> a.contains("{prompt}"))) {
            throw new ConfigException(prefix + "argv must pass the task description somewhere as {prompt}");
        }
        OutputFormat output;
        try {
            output = OutputFormat.fromWireName(String.valueOf(settings.getOrDefault("output", "text")));
        } catch (IllegalArgumentException e) {
            throw new ConfigException(prefix + e.getMessage());
        }
        List<String> env = new ArrayList<>(settings.get("env") == null ? List.of() : stringList(prefix, "env", settings.get("env")));
        AgentConfig.HttpEndpoint endpoint = null;
        if (type.isHttp()) {
            endpoint = endpoint(prefix, type, settings);
            if (endpoint.apiKeyEnv() != null && !env.contains(endpoint.apiKeyEnv())) {
                env.add(endpoint.apiKeyEnv());
            }
            if (String.valueOf(settings.getOrDefault("model", "")).isBlank()) {
                throw new ConfigException(prefix + "model is required for a " + type.wireName() + " agent");
            }
        } else {
            for (String key : List.of("base_url", "api_key_env", "max_tokens")) {
                if (settings.containsKey(key)) {
                    throw new ConfigException(prefix + key + " applies only to openai-compatible and anthropic agents");
                }
            }
        }
        for (String variable : env) {
            if (!variable.matches("[A-Za-z_][A-Za-z0-9_]*")) {
                throw new ConfigException(prefix + "env entry '" + variable + "' is not an environment variable name");
            }
        }
        String encoding = String.valueOf(settings.getOrDefault("encoding", DEFAULT_ENCODING));
        if (!TokenCounter.isKnownEncoding(encoding)) {
            throw new ConfigException(prefix + "encoding '" + encoding + "' is unknown (use o200k_base or cl100k_base)");
        }
        long estimated = number(prefix, "estimated_output_tokens", settings.get("estimated_output_tokens"),
                DEFAULT_ESTIMATED_OUTPUT_TOKENS);
        return new AgentConfig(name, type, argv, output, env, String.valueOf(settings.getOrDefault("model", "")), encoding,
                estimated, prices(prefix, settings.get("prices")), baseDir, retry(prefix, settings.get("retry")),
                limits(prefix, name, settings.get("limits"), settings.get("rate_limit_signals")), endpoint,
                budget(prefix, settings.get("budget")));
    }

    private static final Set<String> PRICE_KEYS = Set.of("input_per_mtok", "output_per_mtok", "cache_read_per_mtok",
            "cache_write_per_mtok");
    private static final Set<String> BUDGET_KEYS = Set.of("tokens_per_day", "usd_per_day", "tokens_per_month", "usd_per_month");

    /** {@code prices:} USD per 1M tokens; cache prices default to the input price. */
    private static Prices prices(String prefix, Object value) {
        if (value == null) {
            return Prices.FREE;
        }
        if (!(value instanceof Map<?, ?> prices)) {
            throw new ConfigException(prefix + "prices must be a mapping with input_per_mtok and output_per_mtok (USD per 1M tokens)");
        }
        for (Object key : prices.keySet()) {
            if (!PRICE_KEYS.contains(String.valueOf(key))) {
                throw new ConfigException(prefix + "prices." + key + " is unknown; use " + String.join(", ", new TreeSet<>(PRICE_KEYS)));
            }
        }
        double input = price(prefix, "prices.input_per_mtok", prices.get("input_per_mtok"));
        double output = price(prefix, "prices.output_per_mtok", prices.get("output_per_mtok"));
        double cacheRead = prices.get("cache_read_per_mtok") == null ? input
                : price(prefix, "prices.cache_read_per_mtok", prices.get("cache_read_per_mtok"));
        double cacheWrite = prices.get("cache_write_per_mtok") == null ? input
                : price(prefix, "prices.cache_write_per_mtok", prices.get("cache_write_per_mtok"));
        return new Prices(input, output, cacheRead, cacheWrite);
    }

    /** {@code budget:} the agent's own pools across tenants, per UTC day and month; absent keys are unlimited. */
    private static PeriodLimits budget(String prefix, Object value) {
        if (value == null) {
            return PeriodLimits.NONE;
        }
        if (!(value instanceof Map<?, ?> budget)) {
            throw new ConfigException(prefix + "budget must be a mapping of " + String.join(", ", new TreeSet<>(BUDGET_KEYS)));
        }
        for (Object key : budget.keySet()) {
            if (!BUDGET_KEYS.contains(String.valueOf(key))) {
                throw new ConfigException(prefix + "budget." + key + " is unknown; use " + String.join(", ", new TreeSet<>(BUDGET_KEYS)));
            }
        }
        return new PeriodLimits(
                budget.get("tokens_per_day") == null ? 0 : number(prefix, "budget.tokens_per_day", budget.get("tokens_per_day"), 0),
                usd(prefix, "budget.usd_per_day", budget.get("usd_per_day")),
                budget.get("tokens_per_month") == null ? 0
                        : number(prefix, "budget.tokens_per_month", budget.get("tokens_per_month"), 0),
                usd(prefix, "budget.usd_per_month", budget.get("usd_per_month")));
    }

    private static long usd(String prefix, String key, Object value) {
        if (value == null) {
            return 0;
        }
        if (value instanceof Number n && n.doubleValue() > 0 && n.doubleValue() <= 1e9) {
            return PeriodLimits.micros(new java.math.BigDecimal(n.toString()));
        }
        throw new ConfigException(prefix + key + "=" + value + ": must be a positive amount of US dollars, at most 1000000000");
    }

    private static AgentConfig.HttpEndpoint endpoint(String prefix, AgentType type, Map<Object, Object> settings) {
        Object url = settings.get("base_url");
        if (url == null) {
            throw new ConfigException(prefix + "base_url is required for a " + type.wireName() + " agent, e.g. "
                    + (type == AgentType.ANTHROPIC ? "https://api.anthropic.com" : "http://127.0.0.1:11434/v1"));
        }
        java.net.URI uri;
        try {
            uri = java.net.URI.create(String.valueOf(url));
        } catch (IllegalArgumentException e) {
            throw new ConfigException(prefix + "base_url '" + url + "' is not a URL: " + e.getMessage());
        }
        if (!("http".equals(uri.getScheme()) || "https".equals(uri.getScheme())) || uri.getHost() == null) {
            throw new ConfigException(prefix + "base_url '" + url + "' must be an http:// or https:// URL with a host");
        }
        String keyEnv = settings.get("api_key_env") == null ? null : String.valueOf(settings.get("api_key_env"));
        if (keyEnv != null && !keyEnv.matches("[A-Za-z_][A-Za-z0-9_]*")) {
            throw new ConfigException(prefix + "api_key_env '" + keyEnv + "' is not an environment variable name");
        }
        long maxTokens = number(prefix, "max_tokens", settings.get("max_tokens"), 1_024);
        String base = String.valueOf(url);
        return new AgentConfig.HttpEndpoint(base.endsWith("/") ? base.substring(0, base.length() - 1) : base, keyEnv, maxTokens);
    }

    private static AgentLimits limits(String prefix, String name, Object limitsValue, Object signalsValue) {
        AgentLimits defaults = AgentLimits.defaults(name);
        String group = name;
        Optional<Long> requests = Optional.empty();
        Optional<java.time.Duration> window = Optional.empty();
        Optional<java.time.Duration> guard = Optional.empty();
        long tokens = 0;
        if (limitsValue != null) {
            if (!(limitsValue instanceof Map<?, ?> limits)) {
                throw new ConfigException(prefix + "limits must be a mapping with group, requests, window_seconds, tokens, guard_ms");
            }
            Set<String> known = Set.of("group", "requests", "window_seconds", "tokens", "guard_ms");
            for (Object key : limits.keySet()) {
                if (!known.contains(String.valueOf(key))) {
                    throw new ConfigException(prefix + "unknown setting 'limits." + key + "' (known: " + known.stream().sorted().toList() + ")");
                }
            }
            if (limits.get("group") != null) {
                group = String.valueOf(limits.get("group"));
                if (!AgentConfig.NAME.matcher(group).matches()) {
                    throw new ConfigException(prefix + "limits.group '" + group + "': must be lower-case letters, digits, '-' or '_' (at most 64)");
                }
            }
            if (limits.get("requests") != null) {
                requests = Optional.of(number(prefix, "limits.requests", limits.get("requests"), 0));
            }
            if (limits.get("window_seconds") != null) {
                Object w = limits.get("window_seconds");
                if (!(w instanceof Number n) || n.doubleValue() < 0.001 || n.doubleValue() > 86_400) {
                    throw new ConfigException(prefix + "limits.window_seconds=" + w + ": must be a number of seconds from 0.001 to 86400");
                }
                window = Optional.of(java.time.Duration.ofMillis(Math.round(n.doubleValue() * 1000)));
            }
            if (limits.get("tokens") != null) {
                tokens = number(prefix, "limits.tokens", limits.get("tokens"), 0);
            }
            if (limits.get("guard_ms") != null) {
                Object g = limits.get("guard_ms");
                if (!(g instanceof Integer ms) || ms < 0 || ms > 60_000) {
                    throw new ConfigException(prefix + "limits.guard_ms=" + g + ": must be an integer from 0 to 60000 milliseconds");
                }
                guard = Optional.of(java.time.Duration.ofMillis(ms));
            }
        }
        java.util.Set<Integer> codes = Set.of();
        List<java.util.regex.Pattern> patterns = defaults.patterns();
        if (signalsValue != null) {
            if (!(signalsValue instanceof Map<?, ?> signals)) {
                throw new ConfigException(prefix + "rate_limit_signals must be a mapping with exit_codes and patterns");
            }
            for (Object key : signals.keySet()) {
                if (!Set.of("exit_codes", "patterns").contains(String.valueOf(key))) {
                    throw new ConfigException(prefix + "unknown setting 'rate_limit_signals." + key + "' (known: exit_codes, patterns)");
                }
            }
            if (signals.get("exit_codes") != null) {
                codes = new java.util.HashSet<>();
                if (!(signals.get("exit_codes") instanceof List<?> list)) {
                    throw new ConfigException(prefix + "rate_limit_signals.exit_codes must be a list of exit codes");
                }
                for (Object code : list) {
                    if (!(code instanceof Integer c) || c < 1 || c > 255) {
                        throw new ConfigException(prefix + "rate_limit_signals.exit_codes: " + code + " is not an exit code from 1 to 255");
                    }
                    codes.add(c);
                }
            }
            if (signals.get("patterns") != null) {
                patterns = new ArrayList<>();
                for (String regex : stringList(prefix, "rate_limit_signals.patterns", signals.get("patterns"))) {
                    try {
                        patterns.add(java.util.regex.Pattern.compile(regex));
                    } catch (java.util.regex.PatternSyntaxException e) {
                        throw new ConfigException(prefix + "rate_limit_signals.patterns: '" + regex + "' is not a regular expression: "
                                + e.getDescription());
                    }
                }
            }
        }
        return new AgentLimits(group, requests, window, tokens, guard, codes, patterns);
    }

    private static RetryPolicy retry(String prefix, Object value) {
        if (value == null) {
            return RetryPolicy.DEFAULT;
        }
        if (!(value instanceof Map<?, ?> retry)) {
            throw new ConfigException(prefix + "retry must be a mapping with max_attempts, exit_codes, on_timeout");
        }
        for (Object key : retry.keySet()) {
            if (!Set.of("max_attempts", "exit_codes", "on_timeout").contains(String.valueOf(key))) {
                throw new ConfigException(prefix + "unknown setting 'retry." + key + "' (known: max_attempts, exit_codes, on_timeout)");
            }
        }
        long attemptsRead = number(prefix, "retry.max_attempts", retry.get("max_attempts"), RetryPolicy.DEFAULT.maxAttempts());
        if (attemptsRead > 1_000) {
            throw new ConfigException(prefix + "retry.max_attempts=" + attemptsRead + ": must be at most 1000");
        }
        int attempts = (int) attemptsRead;
        java.util.Set<Integer> codes = new java.util.HashSet<>();
        if (retry.get("exit_codes") != null) {
            if (!(retry.get("exit_codes") instanceof List<?> list)) {
                throw new ConfigException(prefix + "retry.exit_codes must be a list of exit codes");
            }
            for (Object code : list) {
                if (!(code instanceof Integer c) || c < 1 || c > 255) {
                    throw new ConfigException(prefix + "retry.exit_codes: " + code + " is not an exit code from 1 to 255");
                }
                codes.add(c);
            }
        }
        Object onTimeout = retry.get("on_timeout");
        if (onTimeout != null && !(onTimeout instanceof Boolean)) {
            throw new ConfigException(prefix + "retry.on_timeout must be true or false");
        }
        return new RetryPolicy(attempts, codes, Boolean.TRUE.equals(onTimeout));
    }

    private static List<String> stringList(String prefix, String key, Object value) {
        if (!(value instanceof List<?> list)) {
            throw new ConfigException(prefix + key + " must be a list of strings");
        }
        List<String> strings = new ArrayList<>();
        for (Object item : list) {
            if (item == null || item instanceof Map || item instanceof List) {
                throw new ConfigException(prefix + key + " must be a list of strings, found " + item);
            }
            strings.add(String.valueOf(item));
        }
        return strings;
    }

    private static long number(String prefix, String key, Object value, long defaultValue) {
        if (value == null) {
            return defaultValue;
        }
        // A whole number only: 1.5 was read as 1, and a number past 64 bits (a YAML BigInteger) as its low bits.
        if ((value instanceof Integer || value instanceof Long) && ((Number) value).longValue() > 0
                && ((Number) value).longValue() <= MAX_NUMBER) {
            return ((Number) value).longValue();
        }
        throw new ConfigException(prefix + key + "=" + value + ": must be a whole number from 1 to " + MAX_NUMBER);
    }

    private static double price(String prefix, String key, Object value) {
        if (value == null) {
            return 0;
        }
        // Finite and bounded: .inf was accepted, and the first settle after the agent ran failed on it.
        if (value instanceof Number n && n.doubleValue() >= 0 && n.doubleValue() <= MAX_PRICE) {
            return n.doubleValue();
        }
        throw new ConfigException(prefix + key + "=" + value + ": must be a number of USD per 1M tokens from 0 to " + MAX_PRICE);
    }

    /** The largest count a setting takes (tokens, attempts, a window's requests): far past any real one, safe to add. */
    static final long MAX_NUMBER = 1_000_000_000_000L;
    /** The largest price per million tokens a setting takes, in US dollars. */
    static final double MAX_PRICE = 1_000_000;
}
