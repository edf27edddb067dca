package dev.kage.coordinator.task;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * Which repositories a tenant's tasks may name ({@code KAGE_REPO_ALLOW}): whitespace-separated {@code tenant=prefix}
 * entries, {@code *=prefix} for every tenant, each prefix ending in {@code /}. Unset, any repository the task's form
 * allows is accepted (one team's fleet); set, a task's {@code repo} must start with one of its tenant's prefixes, so a
 * tenant cannot have a worker clone a path or URL that the worker can reach and it should not (another tenant's
 * repository, a worker's own caches, a private host the workers' keys open). A task without {@code repo} gets the
 * workers' {@code KAGE_DEFAULT_REPO}, the operator's choice, and is always accepted. Immutable; thread-safe.
 */
public final class RepoPolicy {
    public static final String VARIABLE = "KAGE_REPO_ALLOW";
    private static final Pattern TENANT = Pattern.compile("\\*|[A-Za-z0-9._-]{1,64}");

    /** Prefixes by tenant ({@code *}: every tenant); empty when no policy is set. */
    private final Map<String, List<String>> prefixes;

    private RepoPolicy(Map<String, List<String>> prefixes) {
        this.prefixes = prefixes;
    }

    /** Any repository is accepted. */
    public static final RepoPolicy OPEN = new RepoPolicy(Map.of());

    /**
     * @throws ConfigException naming the variable, for an entry that is not {@code tenant=prefix/}
     */
    public static RepoPolicy load(Env env) {
        Optional<String> raw = env.get(VARIABLE).filter(value -> !value.isBlank());
        if (raw.isEmpty()) {
            return OPEN;
        }
        Map<String, List<String>> prefixes = new LinkedHashMap<>();
        for (String entry : raw.get().trim().split("\\s+")) {
            int eq = entry.indexOf('=');
            String tenant = eq < 0 ? "" : entry.substring(0, eq);
            String prefix = eq < 0 ? "" : entry.substring(eq + 1);
            if (!TENANT.matcher(tenant).matches() || prefix.isEmpty()) {
                throw new ConfigException(VARIABLE + ": '" + entry + "' is not tenant=prefix (or *=prefix), e.g. "
                        + "acme=https://github.com/acme/");
            }
            if (!prefix.endsWith("/")) {
                throw new ConfigException(VARIABLE + ": prefix '" + prefix + "' must end with '/' (else "
                        + "https://github.com/acme would also allow https://github.com/acme-other/)");
            }
            if (unsafe(prefix)) {
                throw new ConfigException(VARIABLE + ": prefix '" + prefix + "' must not hold '..', '%' or '\\'");
            }
            prefixes.computeIfAbsent(tenant, t -> new ArrayList<>()).add(prefix);
        }
        prefixes.replaceAll((tenant, list) -> List.copyOf(list));
        return new RepoPolicy(Map.copyOf(prefixes));
    }

    /**
     * Why the tenant's task may not name this repository, as a field error on {@code field}; empty when it may (or it
     * names none).
     */
    public Optional<FieldError> refusal(String tenant, String repo, String field) {
        if (prefixes.isEmpty() || repo == null) {
            return Optional.empty();
        }
        List<String> allowed = new ArrayList<>(prefixes.getOrDefault(tenant, List.of()));
        allowed.addAll(prefixes.getOrDefault("*", List.of()));
        if (unsafe(repo)) {
            // A path that climbs out of its prefix, or an escape that decodes to one, is not judged by its text.
            return Optional.of(new FieldError(field, "must not hold '..', '%' or '\\' while " + VARIABLE + " is set"));
        }
        if (allowed.stream().anyMatch(repo::startsWith)) {
            return Optional.empty();
        }
        return Optional.of(new FieldError(field, "'" + ErrorBody.printable(repo) + "' is not a repository this tenant may use"
                + (allowed.isEmpty() ? " (none is allowed; send no repo to use the workers' default)"
                        : "; allowed: " + String.join(" ", allowed) + "…")));
    }

    /**
     * Every task's refusals at once, for a batch ({@code tasks[i].repo}).
     */
    List<FieldError> refusals(String tenant, List<SubmitRequest> requests) {
        List<FieldError> errors = new ArrayList<>();
        for (int i = 0; i < requests.size(); i++) {
            refusal(tenant, requests.get(i).repo(), "tasks[" + i + "].repo").ifPresent(errors::add);
        }
        return errors;
    }

    private static boolean unsafe(String text) {
        return text.contains("..") || text.contains("%") || text.contains("\\");
    }
}
