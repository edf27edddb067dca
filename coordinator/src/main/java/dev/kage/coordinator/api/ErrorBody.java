package dev.kage.coordinator.api;

import io.micronaut.serde.annotation.Serdeable;
import java.util.List;

/**
 * Every error the API returns: a stable code, a sentence, and for bad input one entry per bad field.
 *
 * @param error   machine-readable code, e.g. {@code validation_failed}, {@code unauthorized}, {@code not_found}
 * @param message what went wrong, for people
 * @param errors  the bad fields, empty when the error is not about input
 */
@Serdeable
public record ErrorBody(String error, String message, List<FieldError> errors) {

    public static ErrorBody of(String error, String message) {
        return new ErrorBody(error, message, List.of());
    }

    /**
     * A value a client sent, made safe to echo in an error: control characters escaped ({@code \\u000a}), at most 64
     * code points (a surrogate pair is never cut), then {@code …}.
     */
    public static String printable(String value) {
        StringBuilder out = new StringBuilder();
        value.codePoints().limit(64).forEach(c -> {
            if (c < 0x20 || c == 0x7f) {
                out.append(String.format("\\u%04x", c));
            } else {
                out.appendCodePoint(c);
            }
        });
        return value.codePointCount(0, value.length()) > 64 ? out + "…" : out.toString();
    }

    /**
     * @param field   the field's path, e.g. {@code cli_assignments[0].timeout}
     * @param message what is wrong with it and what is accepted
     */
    @Serdeable
    public record FieldError(String field, String message) {
    }
}
