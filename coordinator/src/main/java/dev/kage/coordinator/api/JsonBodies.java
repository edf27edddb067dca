package dev.kage.coordinator.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.coordinator.task.InvalidRequestException;
import java.io.IOException;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/** Reading the JSON object a PUT sends: one place for "not JSON", "not an object" and unknown fields. Thread-safe. */
public final class JsonBodies {
    /**
     * Decimals as BigDecimal: {@code 1e400} is a number too large for a field, not a double's Infinity (which has no
     * decimal value). A field given twice is refused, as in a submit: the last one winning would let
     * {@code {"tokens_per_day": 1000, "tokens_per_day": 0}} lift a limit that reads as set. So is anything after the
     * object ({@code {"requests": 50} {"requests": 1}} applied the first and ignored the second), as in a submit.
     */
    private static final ObjectMapper JSON = JsonMapper.builder().enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(com.fasterxml.jackson.core.JsonParser.Feature.STRICT_DUPLICATE_DETECTION).build();

    private JsonBodies() {
    }

    /**
     * @param known  the fields the object may have (any of them)
     * @param errors where an unknown field is reported, named, so the caller can add its own and answer all at once
     * @return the object
     * @throws InvalidRequestException (field {@code body}) when the body is empty, not JSON, or not a non-empty object
     */
    public static JsonNode object(byte[] body, Set<String> known, List<FieldError> errors) {
        String names = String.join(", ", new TreeSet<>(known));
        JsonNode root;
        try {
            root = body == null || body.length == 0 ? null : JSON.readTree(body);
        } catch (IOException e) {
            throw new InvalidRequestException(List.of(new FieldError("body", "not valid JSON: " + e.getMessage())));
        }
        if (root == null || !root.isObject() || root.isEmpty()) {
            throw new InvalidRequestException(List.of(new FieldError("body", "a JSON object with any of " + names)));
        }
        for (Iterator<String> fields = root.fieldNames(); fields.hasNext(); ) {
            String name = fields.next();
            if (!known.contains(name)) {
                errors.add(new FieldError(name, "unknown field; known: " + names));
            }
        }
        return root;
    }
}
