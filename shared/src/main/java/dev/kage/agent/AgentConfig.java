package dev.kage.agent;

import dev.kage.budget.PeriodLimits;
import dev.kage.tokens.Prices;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One agent as the operator configured it. Immutable and thread-safe.
 *
 * @param name                  the name tasks use in {@code cli_assignments[].cli_name}
 * @param type                  how it runs
 * @param argv                  argv template; {@code {prompt}}, {@code {task_id}}, {@code {agent}}, {@code {workdir}} and
 *                              {@code {model}} are replaced inside elements, never through a shell; empty for a
 *                              {@link AgentType#NOOP} agent
 * @param output                how its standard output is parsed
 * @param envPassthrough        names of environment variables handed to the process (API keys); their values are never logged
 * @param model                 model name reported in results, may be empty
 * @param encoding              jtokkit encoding for counting tokens when the agent reports none
 * @param estimatedOutputTokens tokens reserved for the answer before a run, added to the prompt's count
 * @param prices                USD per 1M tokens: costs runs the agent reports no cost for, and estimates reservations
 * @param baseDir               folder of the configuration file; relative executables are resolved against it
 * @param retry                 when a failed run is tried again
 * @param limits                its rate-limit group, limits and rate-limit signals
 * @param endpoint              for an HTTP agent type, where and how to call it; null otherwise
 * @param budget                the agent's own pools per day and month across tenants ({@code budget:}); none by default
 */
public record AgentConfig(
        String name,
        AgentType type,
        List<String> argv,
        OutputFormat output,
        List<String> envPassthrough,
        String model,
        String encoding,
        long estimatedOutputTokens,
        Prices prices,
        Path baseDir,
        RetryPolicy retry,
        AgentLimits limits,
        HttpEndpoint endpoint,
        PeriodLimits budget) {

    public static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9_-]{0,63}");
    private static final Pattern PLACEHOLDER = Pattern.compile("\\{(prompt|task_id|agent|workdir|model)}");

    public AgentConfig {
        argv = List.copyOf(argv);
        envPassthrough = List.copyOf(envPassthrough);
    }

    /** An agent with the default limits: its own limit group, the fleet's default limit. */
    public AgentConfig(String name, AgentType type, List<String> argv, OutputFormat output, List<String> envPassthrough,
                       String model, String encoding, long estimatedOutputTokens, double inputUsdPerMillion,
                       double outputUsdPerMillion, Path baseDir, RetryPolicy retry) {
        this(name, type, argv, output, envPassthrough, model, encoding, estimatedOutputTokens,
                Prices.of(inputUsdPerMillion, outputUsdPerMillion), baseDir, retry, AgentLimits.defaults(name), null,
                PeriodLimits.NONE);
    }

    /** A process agent with the given limits. */
    public AgentConfig(String name, AgentType type, List<String> argv, OutputFormat output, List<String> envPassthrough,
                       String model, String encoding, long estimatedOutputTokens, double inputUsdPerMillion,
                       double outputUsdPerMillion, Path baseDir, RetryPolicy retry, AgentLimits limits) {
        this(name, type, argv, output, envPassthrough, model, encoding, estimatedOutputTokens,
                Prices.of(inputUsdPerMillion, outputUsdPerMillion), baseDir, retry, limits, null, PeriodLimits.NONE);
    }

    /**
     * Where an HTTP agent is called.
     *
     * @param baseUrl   e.g. {@code http://127.0.0.1:11434/v1} (OpenAI-compatible) or {@code https://api.anthropic.com}
     * @param apiKeyEnv the worker's environment variable holding the key, or null for none; its value is never logged
     * @param maxTokens the answer's token cap sent with each request
     */
    public record HttpEndpoint(String baseUrl, String apiKeyEnv, long maxTokens) {
    }

    /**
     * The argv for one run. Each placeholder is replaced in a single pass, so a prompt that contains
     * {@code {task_id}} stays as written.
     *
     * <p>An element whose template does not begin with {@code -} is never rendered as an option: when its value would
     * begin with {@code -} (a task description such as {@code --permission-mode=bypassPermissions} in a standalone
     * {@code {prompt}}), one space is put before it. The agent's own parser would otherwise read a tenant's text as an
     * option of the command the operator configured; with the space, every usual parser (getopt, commander, yargs,
     * clap, argparse, Go's flag) reads it as an argument, and a model reads the same text.
     */
    public List<String> render(String prompt, String taskId, Path workdir) {
        Map<String, String> values = Map.of(
                "prompt", prompt,
                "task_id", taskId,
                "agent", name,
                "workdir", workdir.toString(),
                "model", model);
        List<String> rendered = new ArrayList<>(argv.size());
        for (int i = 0; i < argv.size(); i++) {
            String element = argv.get(i);
            if (i == 0) {
                rendered.add(executable().toString());
                continue;
            }
            Matcher matcher = PLACEHOLDER.matcher(element);
            StringBuilder out = new StringBuilder();
            while (matcher.find()) {
                matcher.appendReplacement(out, Matcher.quoteReplacement(values.get(matcher.group(1))));
            }
            matcher.appendTail(out);
            if (!out.isEmpty() && out.charAt(0) == '-' && !element.startsWith("-")) {
                out.insert(0, ' ');
            }
            rendered.add(out.toString());
        }
        return rendered;
    }

    /** The program to start: a path relative to the config file's folder, an absolute path, or a name on {@code PATH}. */
    public Path executable() {
        String program = argv.getFirst();
        if (program.contains("/")) {
            return baseDir.resolve(program).normalize();
        }
        return Path.of(program);
    }

    /** Where the executable was found, or empty when it is not installed or not executable. */
    public Optional<Path> locateExecutable(String pathVariable) {
        Path program = executable();
        if (program.isAbsolute()) {
            return Files.isRegularFile(program) && Files.isExecutable(program) ? Optional.of(program) : Optional.empty();
        }
        if (pathVariable == null) {
            return Optional.empty();
        }
        for (String dir : pathVariable.split(":")) {
            if (dir.isEmpty()) {
                continue;
            }
            Path candidate = Path.of(dir).resolve(program);
            if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
                return Optional.of(candidate);
            }
        }
        return Optional.empty();
    }
}
