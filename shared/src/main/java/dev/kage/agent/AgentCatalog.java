package dev.kage.agent;

import dev.kage.config.ConfigException;
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
            "estimated_output_tokens", "prices", "retry");

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
        return new AgentCatalog(agents);
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
        // A noop agent runs no program: whatever argv it is given is ignored.
        List<String> argv = type == AgentType.NOOP ? List.of() : stringList(prefix, "argv", settings.get("argv"));
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
        List<String> env = settings.get("env") == null ? List.of() : stringList(prefix, "env", settings.get("env"));
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
        double inputPrice = 0;
        double outputPrice = 0;
        if (settings.get("prices") instanceof Map<?, ?> prices) {
            inputPrice = price(prefix, "prices.input_per_mtok", prices.get("input_per_mtok"));
            outputPrice = price(prefix, "prices.output_per_mtok", prices.get("output_per_mtok"));
        } else if (settings.get("prices") != null) {
            throw new ConfigException(prefix + "prices must be a mapping with input_per_mtok and output_per_mtok (USD per 1M tokens)");
        }
        return new AgentConfig(name, type, argv, output, env, String.valueOf(settings.getOrDefault("model", "")), encoding,
                estimated, inputPrice, outputPrice, baseDir, retry(prefix, settings.get("retry")));
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
        int attempts = (int) number(prefix, "retry.max_attempts", retry.get("max_attempts"), RetryPolicy.DEFAULT.maxAttempts());
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
        if (value instanceof Number n && n.longValue() > 0) {
            return n.longValue();
        }
        throw new ConfigException(prefix + key + "=" + value + ": must be a positive integer");
    }

    private static double price(String prefix, String key, Object value) {
        if (value == null) {
            return 0;
        }
        if (value instanceof Number n && n.doubleValue() >= 0) {
            return n.doubleValue();
        }
        throw new ConfigException(prefix + key + "=" + value + ": must be a number of USD per 1M tokens, zero or more");
    }
}
