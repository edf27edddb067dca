package dev.kage.client;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.ZoneId;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ScopeType;
import picocli.CommandLine.Spec;

/**
 * {@code kage}: the command-line client of the coordinator's API. Its options {@code --url}, {@code --key} and
 * {@code --config} are accepted before or after the subcommand; see {@link ClientConfig} for how they combine with
 * the environment and the config file. One instance per run; not thread-safe.
 */
@Command(name = "kage", mixinStandardHelpOptions = true, versionProvider = Kage.Version.class,
        description = "Submit, follow and cancel tasks of a Kage Bunshin fleet, see its queues and workers, manage API keys.",
        subcommands = {SubmitCommand.class, StatusCommand.class, TasksCommand.class, WatchCommand.class, CancelCommand.class,
                QueuesCommand.class, WorkersCommand.class, KeysCommand.class, ConfigCommand.class, CommandLine.HelpCommand.class},
        footerHeading = "%nConfiguration:%n",
        footer = {"  URL:  --url, else KAGE_URL, else url= in the config file, else",
                "        " + ClientConfig.DEFAULT_URL,
                "  key:  --key, else KAGE_API_KEY, else key= in the config file",
                "  config file (properties: url=..., key=...): --config, else KAGE_CONFIG,",
                "        else $XDG_CONFIG_HOME/kage/config, else ~/.config/kage/config"},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:done (with --wait: the task completed)", "1:with --wait: the task ended partial, failed or cancelled",
                "2:bad command line or configuration", "3:the API refused the request (4xx); its message is printed",
                "4:the coordinator failed (5xx), could not be reached, or what answered is not its API"})
public final class Kage implements Callable<Integer> {
    @Option(names = "--url", scope = ScopeType.INHERIT, paramLabel = "URL",
            description = "the coordinator (default: KAGE_URL, the config file, " + ClientConfig.DEFAULT_URL + ")")
    String url;

    @Option(names = "--key", scope = ScopeType.INHERIT, paramLabel = "KEY",
            description = "the API key (default: KAGE_API_KEY, the config file); never printed")
    String key;

    @Option(names = "--config", scope = ScopeType.INHERIT, paramLabel = "FILE",
            description = "the config file (default: KAGE_CONFIG, ~/.config/kage/config)")
    Path config;

    @Spec
    CommandSpec spec;

    private final Map<String, String> env;
    private final Path home;
    private final ZoneId zone;
    private ClientConfig resolved;

    // What tests shorten; the defaults are the client's.
    Duration requestTimeout = ApiClient.REQUEST_TIMEOUT;
    Duration streamIdleLimit = ApiClient.STREAM_IDLE_LIMIT;
    Reconnects.Clock clock = Reconnects.Clock.SYSTEM;
    Duration reconnectBudget = Reconnects.BUDGET;

    /**
     * @param env  the environment the configuration is read from
     * @param home the user's home folder (for {@code ~/.config/kage/config})
     * @param zone the zone event times are shown in
     */
    public Kage(Map<String, String> env, Path home, ZoneId zone) {
        this.env = Map.copyOf(env);
        this.home = home;
        this.zone = zone;
    }

    public static void main(String[] args) {
        PrintWriter out = new PrintWriter(System.out, true, StandardCharsets.UTF_8);
        PrintWriter err = new PrintWriter(System.err, true, StandardCharsets.UTF_8);
        int status = run(new Kage(System.getenv(), Path.of(System.getProperty("user.home")), ZoneId.systemDefault()), out, err, args);
        out.flush();
        err.flush();
        System.exit(status);
    }

    /**
     * Runs one command line; returns its exit status (see {@link ExitCodes}). What it prints goes through a
     * {@link TerminalWriter}: text from the server (and from agents, through it) cannot drive the terminal.
     */
    public static int run(Kage kage, PrintWriter out, PrintWriter err, String... args) {
        PrintWriter shownOut = new PrintWriter(new TerminalWriter(out), true);
        PrintWriter shownErr = new PrintWriter(new TerminalWriter(err), true);
        try {
            return commandLine(kage, shownOut, shownErr).execute(args);
        } finally {
            shownOut.flush();
            shownErr.flush();
        }
    }

    static CommandLine commandLine(Kage kage, PrintWriter out, PrintWriter err) {
        CommandLine cli = new CommandLine(kage);
        cli.setOut(out);
        cli.setErr(err);
        cli.setCaseInsensitiveEnumValuesAllowed(true);
        // No colours in the help: its escape sequences would be shown as text (TerminalWriter).
        cli.setColorScheme(CommandLine.Help.defaultColorScheme(CommandLine.Help.Ansi.OFF));
        // "-wait" is an unknown option, not -w -a it; a description starting with '-' goes after "--"
        cli.setPosixClusteredShortOptionsAllowed(false);
        // "@notes.md" is a description, not "read the arguments from notes.md" (picocli's default, also after "--").
        cli.setExpandAtFiles(false);
        cli.setParameterExceptionHandler((e, args) -> {
            // picocli's own handler, but its message quotes what it could not match: a key given to a mistyped option.
            CommandLine failed = e.getCommandLine();
            failed.getErr().println(masked(e.getMessage(), args));
            if (!CommandLine.UnmatchedArgumentException.printSuggestions(e, failed.getErr())) {
                failed.usage(failed.getErr());
            }
            failed.getErr().flush();
            return ExitCodes.USAGE;
        });
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            if (e instanceof ClientException problem) {
                commandLine.getErr().println("kage: " + problem.getMessage());
                if (problem instanceof ClientException.ApiError api) {
                    for (String field : api.fieldErrors()) {
                        commandLine.getErr().println("  " + field);
                    }
                }
                commandLine.getErr().flush();
                return problem.exitCode();
            }
            // A bug or a case not foreseen: one line, without the message, which may quote a header value (the key).
            commandLine.getErr().println("kage: unexpected " + e.getClass().getName() + (e.getStackTrace().length > 0
                    ? " at " + e.getStackTrace()[0] : "") + " (not the coordinator's answer; please report it)");
            commandLine.getErr().flush();
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            return ExitCodes.UNAVAILABLE;
        });
        return cli;
    }

    /**
     * {@code message} with every argument that may be an API key shown as its prefix only ({@link ClientConfig#keyPrefix}):
     * one that looks like a server-made key ({@code kb_…}), the value of an option whose name says "key"
     * ({@code --api-key=…}, or the argument after {@code --api-key}, known or not).
     */
    static String masked(String message, String[] args) {
        java.util.Set<String> secrets = new java.util.HashSet<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.startsWith("kb_")) {
                secrets.add(arg);
            }
            if (arg.startsWith("-") && arg.toLowerCase(java.util.Locale.ROOT).contains("key")) {
                int eq = arg.indexOf('=');
                if (eq >= 0) {
                    secrets.add(arg.substring(eq + 1));
                } else if (i + 1 < args.length) {
                    secrets.add(args[i + 1]);
                }
            }
        }
        String shown = message;
        for (String secret : secrets.stream().filter(v -> v.length() >= 4)
                .sorted(java.util.Comparator.comparingInt(String::length).reversed()).toList()) {
            shown = shown.replace(secret, ClientConfig.keyPrefix(secret));
        }
        return shown;
    }

    /** {@code kage} alone: the usage, and a usage error. */
    @Override
    public Integer call() {
        spec.commandLine().usage(spec.commandLine().getErr());
        return ExitCodes.USAGE;
    }

    /** The configuration, resolved once. */
    ClientConfig config() {
        if (resolved == null) {
            resolved = ClientConfig.resolve(url, key, config, env, home);
        }
        return resolved;
    }

    /** A client with the configured URL and key. */
    ApiClient api() {
        ClientConfig c = config();
        return new ApiClient(c.url(), c.requireKey(), requestTimeout, streamIdleLimit);
    }

    /** When a broken event stream is opened again, and when to give up. */
    Reconnects reconnects() {
        return new Reconnects(clock, reconnectBudget);
    }

    PrintWriter out() {
        return spec.commandLine().getOut();
    }

    PrintWriter err() {
        return spec.commandLine().getErr();
    }

    ZoneId zone() {
        return zone;
    }

    /** The version the build wrote into {@code kage-client.properties}. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() throws java.io.IOException {
            java.util.Properties props = new java.util.Properties();
            try (var in = Kage.class.getResourceAsStream("/kage-client.properties")) {
                if (in != null) {
                    props.load(in);
                }
            }
            return new String[] {"kage " + props.getProperty("version", "(unknown version)")};
        }
    }
}
