package dev.kage.worker.run;

import java.util.Collection;
import java.util.List;

/**
 * Replaces secret values (the agent's passed-through environment variables) with {@code ***} in text
 * that will be stored or logged. Immutable and thread-safe.
 */
final class Redactor {
    /** Values shorter than this are not treated as secrets: redacting "1" would garble every number. */
    static final int MIN_SECRET_LENGTH = 6;

    private final List<String> secrets;

    Redactor(Collection<String> values) {
        this.secrets = values.stream().filter(v -> v != null && v.length() >= MIN_SECRET_LENGTH)
                .sorted((a, b) -> b.length() - a.length()).toList();
    }

    String redact(String text) {
        if (text == null) {
            return null;
        }
        String out = text;
        for (String secret : secrets) {
            out = out.replace(secret, "***");
        }
        return out;
    }
}
