package dev.kage.coordinator.auth;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * What an API key may do. Every route under {@code /api} declares the one scope it needs with {@link RequiresScope};
 * {@link ApiKeyFilter} refuses a key without it (403).
 */
public enum Scope {
    /** Create and cancel work: submit tasks (one or a batch), cancel them, replay dead letters. */
    SUBMIT,
    /** Read the tenant's tasks, events, budgets, reports, dead letters and the fleet's queues, workers and limits. */
    READ,
    /**
     * Operate the platform: manage every tenant's API keys, change budgets and rate limits, read any tenant's budgets.
     * An admin key is a platform operator's key, not a tenant's: give it only to the people who run the fleet.
     */
    ADMIN;

    public static final Set<Scope> ALL = Set.copyOf(EnumSet.allOf(Scope.class));

    /** {@code submit}, {@code read}, {@code admin}. */
    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Optional<Scope> fromWire(String value) {
        for (Scope scope : values()) {
            if (scope.wireName().equals(value)) {
                return Optional.of(scope);
            }
        }
        return Optional.empty();
    }

    /** {@code "submit, read"} in declaration order. */
    public static String describe(Set<Scope> scopes) {
        return EnumSet.copyOf(scopes.isEmpty() ? EnumSet.noneOf(Scope.class) : scopes).stream().map(Scope::wireName)
                .collect(Collectors.joining(", "));
    }
}
