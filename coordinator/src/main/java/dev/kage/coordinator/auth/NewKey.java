package dev.kage.coordinator.auth;

import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * What a new key is for, validated the same way for the API and the CLI. Immutable.
 *
 * @param tenant whose key it is ({@link ApiKeys#TENANT})
 * @param name   a label for people, 0-100 printable characters
 * @param scopes one or more
 */
public record NewKey(String tenant, String name, Set<Scope> scopes) {
    public static final int MAX_NAME = 100;

    /**
     * @param scopes scope names as given ({@code submit}, {@code read}, {@code admin})
     * @param errors where each bad field is reported by name ({@code tenant}, {@code name}, {@code scopes[i]})
     * @return the key's description when nothing was reported
     */
    public static Optional<NewKey> parse(String tenant, String name, List<String> scopes, List<FieldError> errors) {
        int before = errors.size();
        if (tenant == null || !ApiKeys.TENANT.matcher(tenant).matches()) {
            errors.add(new FieldError("tenant", "required: " + ApiKeys.TENANT_RULE));
        }
        String label = name == null ? "" : name.strip();
        if (label.length() > MAX_NAME || label.chars().anyMatch(Character::isISOControl)) {
            errors.add(new FieldError("name", "at most " + MAX_NAME + " characters, no control characters"));
        } else if (label.codePoints().anyMatch(c -> Character.getType(c) == Character.SURROGATE)) {
            // A lone UTF-16 surrogate (JSON's "\ud800"): the driver stored it as '?', a name changed without a word.
            errors.add(new FieldError("name", "must be valid Unicode: it has a lone UTF-16 surrogate"));
        }
        Set<Scope> parsed = EnumSet.noneOf(Scope.class);
        if (scopes == null || scopes.isEmpty()) {
            errors.add(new FieldError("scopes", "required: one or more of submit, read, admin"));
        } else {
            for (int i = 0; i < scopes.size(); i++) {
                String value = scopes.get(i);
                Optional<Scope> scope = value == null ? Optional.empty() : Scope.fromWire(value.strip());
                if (scope.isEmpty()) {
                    errors.add(new FieldError("scopes[" + i + "]", "'" + (value == null ? "null" : ErrorBody.printable(value)) + "' is not a scope; known: submit, read, admin"));
                } else {
                    parsed.add(scope.get());
                }
            }
        }
        return errors.size() == before ? Optional.of(new NewKey(tenant, label, Set.copyOf(parsed))) : Optional.empty();
    }

}
