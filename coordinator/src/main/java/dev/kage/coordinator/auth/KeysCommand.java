package dev.kage.coordinator.auth;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.store.Database;
import dev.kage.store.StoreException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * Key management without a key, for the first admin key and for emergencies: talks to {@code DATABASE_URL} (schema
 * {@code KAGE_DB_SCHEMA}) directly, applying the migrations first.
 *
 * <pre>
 * java -jar kage-coordinator.jar keys create --tenant acme --scopes submit,read,admin [--name "ops laptop"]
 * java -jar kage-coordinator.jar keys list [--tenant acme]
 * java -jar kage-coordinator.jar keys revoke ID
 * </pre>
 *
 * {@code create} prints the key alone on standard output (so {@code KEY=$(… keys create …)} works) and what it is on
 * standard error; the key is shown this once and stored only as its SHA-256. Exit codes: 0 done, 1 failed (unknown
 * key, database unreachable), 2 usage or configuration error.
 */
public final class KeysCommand {
    static final String USAGE = """
            usage: keys create --tenant TENANT --scopes submit,read,admin [--name NAME]
                   keys list [--tenant TENANT]
                   keys revoke ID
            Uses DATABASE_URL and KAGE_DB_SCHEMA. Scopes: submit (POST tasks, batch, cancel, replay), read (GET anything
            of the tenant's and the fleet's), admin (keys, budgets, rate limits of every tenant).""";

    private final Env env;
    private final PrintStream out;
    private final PrintStream err;

    public KeysCommand(Env env, PrintStream out, PrintStream err) {
        this.env = env;
        this.out = out;
        this.err = err;
    }

    /** @param args the arguments after {@code keys} */
    public int run(String[] args) {
        if (args.length == 0) {
            return usage("missing command");
        }
        String command = args[0];
        List<String> rest = Arrays.asList(args).subList(1, args.length);
        return switch (command) {
            case "create" -> create(rest);
            case "list" -> list(rest);
            case "revoke" -> revoke(rest);
            case "help", "--help", "-h" -> {
                out.println(USAGE);
                yield 0;
            }
            default -> usage("unknown command '" + command + "'");
        };
    }

    private int create(List<String> args) {
        Options options = Options.parse(args, List.of("--tenant", "--scopes", "--name"));
        if (options.error != null || !options.positional.isEmpty()) {
            return usage(options.error != null ? options.error : "unexpected " + options.positional.get(0));
        }
        List<FieldError> errors = new ArrayList<>();
        String scopes = options.values.get("--scopes");
        Optional<NewKey> spec = NewKey.parse(options.values.get("--tenant"), options.values.get("--name"),
                scopes == null ? List.of() : Arrays.stream(scopes.split(",")).map(String::strip).toList(), errors);
        if (spec.isEmpty()) {
            return usage(errors.stream().map(e -> "--" + e.field().replaceAll("\\[.*", "") + ": " + e.message())
                    .collect(Collectors.joining("; ")));
        }
        return withStore(store -> {
            ApiKeyStore.Created created = store.create(spec.get().tenant(), spec.get().name(), spec.get().scopes());
            err.println("Created API key " + created.row().id() + " (" + created.row().prefix() + "…) for tenant "
                    + created.row().tenant() + " with scopes " + Scope.describe(created.row().scopes())
                    + ". It is shown this once: keep it now.");
            out.println(created.key());
            return 0;
        });
    }

    private int list(List<String> args) {
        Options options = Options.parse(args, List.of("--tenant"));
        if (options.error != null || !options.positional.isEmpty()) {
            return usage(options.error != null ? options.error : "unexpected " + options.positional.get(0));
        }
        Optional<String> tenant = Optional.ofNullable(options.values.get("--tenant"));
        if (tenant.isPresent() && !ApiKeys.TENANT.matcher(tenant.get()).matches()) {
            return usage("--tenant: " + ApiKeys.TENANT_RULE);
        }
        return withStore(store -> {
            out.printf("%-6s %-20s %-14s %-20s %-22s %-28s %-28s %s%n", "ID", "TENANT", "PREFIX", "SCOPES", "NAME", "CREATED",
                    "REVOKED", "LAST USED");
            for (ApiKeyStore.KeyRow row : store.list(tenant)) {
                out.printf("%-6d %-20s %-14s %-20s %-22s %-28s %-28s %s%n", row.id(), row.tenant(), row.prefix() + "…",
                        row.scopes().isEmpty() ? "-" : EnumSet.copyOf(row.scopes()).stream().map(Scope::wireName)
                                .collect(Collectors.joining(",")),
                        row.name().isEmpty() ? "-" : row.name(), row.createdAt(),
                        row.revokedAt() == null ? "-" : row.revokedAt(), row.lastUsedAt() == null ? "-" : row.lastUsedAt());
            }
            return 0;
        });
    }

    private int revoke(List<String> args) {
        if (args.size() != 1) {
            return usage("revoke takes one key id (see keys list)");
        }
        long id;
        try {
            id = Long.parseLong(args.get(0));
        } catch (NumberFormatException e) {
            return usage("'" + args.get(0) + "' is not a key id (see keys list)");
        }
        return withStore(store -> {
            Optional<ApiKeyStore.KeyRow> revoked = store.revoke(id);
            if (revoked.isEmpty()) {
                err.println("No API key " + id + " (see keys list).");
                return 1;
            }
            out.println("Revoked API key " + id + " (" + revoked.get().prefix() + "…) of tenant " + revoked.get().tenant()
                    + " at " + revoked.get().revokedAt() + "; every coordinator refuses it within "
                    + KeyAuthenticator.CACHE_VARIABLE + " (default " + KeyAuthenticator.DEFAULT_CACHE_TTL.toSeconds() + " s).");
            return 0;
        });
    }

    private int withStore(StoreAction action) {
        KageSettings settings;
        try {
            settings = KageSettings.load(env);
        } catch (ConfigException e) {
            err.println("keys: " + e.getMessage());
            return 2;
        }
        try (Database database = Database.open(settings.database(), settings.dbSchema(), "kage-keys", 2,
                settings.dbSocketTimeoutSeconds())) {
            return action.run(new ApiKeyStore(database));
        } catch (StoreException e) {
            err.println("keys: " + e.getMessage());
            return 1;
        }
    }

    private int usage(String problem) {
        err.println("keys: " + problem);
        err.println(USAGE);
        return 2;
    }

    private interface StoreAction {
        int run(ApiKeyStore store);
    }

    /** {@code --name value} and {@code --name=value} options, the rest positional. */
    private static final class Options {
        final java.util.Map<String, String> values = new java.util.HashMap<>();
        final List<String> positional = new ArrayList<>();
        String error;

        static Options parse(List<String> args, List<String> known) {
            Options options = new Options();
            for (int i = 0; i < args.size(); i++) {
                String arg = args.get(i);
                if (!arg.startsWith("--")) {
                    options.positional.add(arg);
                    continue;
                }
                String name = arg.contains("=") ? arg.substring(0, arg.indexOf('=')) : arg;
                if (!known.contains(name)) {
                    options.error = "unknown option " + name + " (known: " + String.join(", ", known) + ")";
                    return options;
                }
                String value;
                if (arg.contains("=")) {
                    value = arg.substring(arg.indexOf('=') + 1);
                } else if (i + 1 < args.size()) {
                    value = args.get(++i);
                } else {
                    options.error = name + " needs a value";
                    return options;
                }
                if (options.values.put(name, value) != null) {
                    options.error = name + " given twice";
                    return options;
                }
            }
            return options;
        }
    }
}
