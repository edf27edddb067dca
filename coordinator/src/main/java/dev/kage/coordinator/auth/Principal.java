package dev.kage.coordinator.auth;

import java.util.Set;

/**
 * Who a request's API key belongs to and what it may do. Immutable.
 *
 * @param tenant the key's tenant: the caller sees only this tenant's tasks, budgets and reports
 * @param scopes what the key may do
 * @param keyId  the key's row in {@code api_keys}; {@code null} for a key from {@code KAGE_API_KEYS} or the dev key
 */
public record Principal(String tenant, Set<Scope> scopes, Long keyId) {
    public Principal {
        scopes = Set.copyOf(scopes);
    }

    public boolean has(Scope scope) {
        return scopes.contains(scope);
    }
}
