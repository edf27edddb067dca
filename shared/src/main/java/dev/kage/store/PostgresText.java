package dev.kage.store;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Text as Postgres stores it: {@code text} and {@code jsonb} refuse the NUL character (a {@code text} value with
 * 0x00, a JSON string with the escape backslash-u0000), and one refused value fails the whole group commit it is in.
 * Agents' output and stderr can hold NULs (a binary file printed, a crashed process), so outcomes are cleaned when they
 * are made: each NUL becomes U+FFFD, the replacement character. Stateless and thread-safe.
 */
public final class PostgresText {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final char REPLACEMENT = '\uFFFD';

    private PostgresText() {
    }

    /** {@code text} without NULs; the same instance when it has none (the common case costs one scan). */
    public static String withoutNul(String text) {
        return text == null || text.indexOf('\0') < 0 ? text : text.replace('\0', REPLACEMENT);
    }

    /**
     * A JSON document whose strings and names hold no NUL. The text is only parsed when it holds an escaped NUL
     * (backslash-u0000) or a raw one; text that is not JSON is returned as it is (Postgres will say what is wrong).
     */
    public static String jsonWithoutNul(String json) {
        if (json == null || (json.indexOf('\0') < 0 && !json.contains("u0000"))) {
            return json;
        }
        try {
            JsonNode tree = JSON.readTree(json);
            return tree == null ? json : JSON.writeValueAsString(clean(tree));
        } catch (JsonProcessingException e) {
            return withoutNul(json);
        }
    }

    private static JsonNode clean(JsonNode node) {
        if (node.isTextual()) {
            return TextNode.valueOf(withoutNul(node.textValue()));
        }
        if (node instanceof ObjectNode object) {
            ObjectNode copy = JSON.createObjectNode();
            List<Map.Entry<String, JsonNode>> fields = new ArrayList<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = object.fields(); it.hasNext(); ) {
                fields.add(it.next());
            }
            fields.forEach(field -> copy.set(withoutNul(field.getKey()), clean(field.getValue())));
            return copy;
        }
        if (node instanceof ArrayNode array) {
            ArrayNode copy = JSON.createArrayNode();
            array.forEach(element -> copy.add(clean(element)));
            return copy;
        }
        return node;
    }
}
