package dev.kage.coordinator.task;

import dev.kage.coordinator.api.ErrorBody.FieldError;
import java.util.List;
import java.util.regex.Pattern;

/** Checks the {@code Idempotency-Key} header: 1–200 printable ASCII characters. */
final class IdempotencyKeys {
    private static final Pattern ALLOWED = Pattern.compile("[\\x21-\\x7e]{1,200}");

    private IdempotencyKeys() {
    }

    /**
     * @return the key, or {@code null} when none was sent
     * @throws InvalidRequestException naming the header when it is malformed
     */
    static String validate(String key) {
        if (key == null) {
            return null;
        }
        if (!ALLOWED.matcher(key).matches()) {
            throw new InvalidRequestException(List.of(new FieldError("Idempotency-Key",
                    "must be 1 to 200 printable ASCII characters without spaces")));
        }
        return key;
    }
}
