package dev.kage.coordinator.task;

import dev.kage.coordinator.api.ErrorBody;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.kage.agent.AgentCatalog;
import dev.kage.config.GitRefs;
import dev.kage.config.KageSettings;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.task.Assignment;
import dev.kage.task.Priority;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Turns a raw request body into a {@link SubmitRequest}, whatever the {@code Content-Type} (the seed's
 * own {@code curl -d} sends none that says JSON). Every problem is collected and reported with the
 * field's path; nothing is guessed. Thread-safe.
 */
public final class SubmitRequestParser {
    public static final int MAX_DESCRIPTION_CHARS = 100_000;
    /**
     * UTF-8 bytes a description may take: an agent gets it as one argument, and Linux takes at most 128 KiB in one
     * (MAX_ARG_STRLEN, its NUL included). 100,000 characters of CJK text are 300,000 bytes: the run could never start.
     * The rest of the 128 KiB is left to what an agent's template puts beside {@code {prompt}} in the same element.
     */
    public static final int MAX_DESCRIPTION_BYTES = 120_000;
    public static final int MAX_ASSIGNMENTS = 16;
    /** Tasks one batch submit may carry. */
    public static final int MAX_BATCH = 1_000;
    public static final int MAX_REPO_CHARS = 2_048;
    public static final int MAX_METADATA_BYTES = 16_384;
    public static final long MAX_TOKENS_LIMIT = 1_000_000_000L;
    private static final int MAX_NESTING = 32;
    private static final Set<String> KNOWN = Set.of("description", "cli_assignments", "priority", "repo", "base_branch",
            "budget", "metadata");
    private static final Pattern URL_REPO = Pattern.compile("(https?|ssh|git|file)://[^\\s]+");
    private static final Pattern SCP_REPO = Pattern.compile("[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\s]+");

    private final ObjectMapper json;
    private final AgentCatalog agents;
    private final KageSettings settings;

    public SubmitRequestParser(AgentCatalog agents, KageSettings settings) {
        this.agents = agents;
        this.settings = settings;
        // Decimals as BigDecimal: metadata keeps 0.12345678901234567890123 as sent, and refuses 1e400 (as a double it
        // was stored as the string "Infinity").
        JsonMapper mapper = JsonMapper.builder()
                .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
                .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
                .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
                .build();
        mapper.getFactory().setStreamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_NESTING).build());
        this.json = mapper;
    }

    /**
     * @throws InvalidRequestException listing every bad field
     */
    public SubmitRequest parse(byte[] body) {
        JsonNode root = readJson(body);
        if (!root.isObject()) {
            throw new InvalidRequestException(List.of(new FieldError("body", "must be a JSON object")));
        }
        List<FieldError> errors = new ArrayList<>();
        SubmitRequest request = parseTask(root, errors);
        if (!errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
        return request;
    }

    /**
     * A batch body {@code {"tasks": [<task>, ...]}} with 1 to {@value #MAX_BATCH} tasks; every bad field of
     * every task is reported, as {@code tasks[3].cli_assignments[0].cli_name}.
     *
     * @throws InvalidRequestException listing every bad field; no task of a bad batch is accepted
     */
    public List<SubmitRequest> parseBatch(byte[] body) {
        JsonNode root = readJson(body);
        if (!root.isObject() || !root.path("tasks").isArray()) {
            throw new InvalidRequestException(List.of(new FieldError("tasks", "is required: {\"tasks\": [<task>, ...]}")));
        }
        List<FieldError> batchFields = new ArrayList<>();
        for (Iterator<String> names = root.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!name.equals("tasks")) {
                // e.g. a "priority" meant for every task: refused, not ignored, since nothing else would tell the client.
                batchFields.add(new FieldError(ErrorBody.printable(name), "is not a field of a batch (only \"tasks\"); set it on each task"));
            }
        }
        if (!batchFields.isEmpty()) {
            throw new InvalidRequestException(batchFields);
        }
        JsonNode tasks = root.get("tasks");
        if (tasks.isEmpty() || tasks.size() > MAX_BATCH) {
            throw new InvalidRequestException(List.of(new FieldError("tasks", "has " + tasks.size() + " entries; send 1 to "
                    + MAX_BATCH)));
        }
        List<FieldError> errors = new ArrayList<>();
        List<SubmitRequest> requests = new ArrayList<>();
        for (int i = 0; i < tasks.size(); i++) {
            String prefix = "tasks[" + i + "]";
            if (!tasks.get(i).isObject()) {
                errors.add(new FieldError(prefix, "must be a JSON object"));
                continue;
            }
            List<FieldError> own = new ArrayList<>();
            requests.add(parseTask(tasks.get(i), own));
            own.forEach(e -> errors.add(new FieldError(prefix + "." + e.field(), e.message())));
        }
        if (!errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
        return requests;
    }

    private SubmitRequest parseTask(JsonNode root, List<FieldError> errors) {
        List<String> ignored = new ArrayList<>();
        for (Iterator<String> names = root.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!KNOWN.contains(name)) {
                ignored.add(name);
            }
        }
        String description = description(root.get("description"), errors);
        List<Assignment> assignments = assignments(root.get("cli_assignments"), errors, ignored);
        Priority priority = priority(root.get("priority"), errors);
        String repo = repo(root.get("repo"), errors);
        String baseBranch = baseBranch(root.get("base_branch"), errors);
        Long maxTokens = budget(root.get("budget"), errors);
        String metadata = metadata(root.get("metadata"), errors);
        return new SubmitRequest(description, assignments, priority, repo, baseBranch, maxTokens, metadata, ignored);
    }

    private JsonNode readJson(byte[] body) {
        if (body == null || body.length == 0) {
            throw new InvalidRequestException(List.of(new FieldError("body", "is empty; send a JSON object with "
                    + "description and cli_assignments")));
        }
        try {
            StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(body));
        } catch (CharacterCodingException e) {
            throw new InvalidRequestException(List.of(new FieldError("body", "is not valid UTF-8")));
        }
        try {
            JsonNode node = json.readTree(body);
            if (node == null || node.isMissingNode()) {
                throw new InvalidRequestException(List.of(new FieldError("body", "is empty")));
            }
            return node;
        } catch (JsonProcessingException e) {
            throw new InvalidRequestException(List.of(new FieldError("body", "is not valid JSON: " + e.getOriginalMessage())));
        } catch (java.io.IOException e) {
            throw new InvalidRequestException(List.of(new FieldError("body", "cannot be read: " + e.getMessage())));
        }
    }

    private static String description(JsonNode node, List<FieldError> errors) {
        if (node == null || node.isNull()) {
            errors.add(new FieldError("description", "is required: what the agents should do"));
            return null;
        }
        if (!node.isTextual()) {
            errors.add(new FieldError("description", "must be a string"));
            return null;
        }
        String text = node.asText();
        if (text.isBlank()) {
            errors.add(new FieldError("description", "must not be blank"));
        } else if (text.codePoints().allMatch(c -> Character.isWhitespace(c) || Character.getType(c) == Character.FORMAT)) {
            errors.add(new FieldError("description", "must not be blank: it has only invisible characters (zero-width "
                    + "spaces, byte order marks, direction marks)"));
        } else if (loneSurrogate(text) >= 0) {
            errors.add(new FieldError("description", LONE_SURROGATE + describe(text)));
        } else if (text.length() > MAX_DESCRIPTION_CHARS) {
            errors.add(new FieldError("description", "is " + text.length() + " characters; at most " + MAX_DESCRIPTION_CHARS));
        } else if (utf8Length(text) > MAX_DESCRIPTION_BYTES) {
            errors.add(new FieldError("description", "is " + utf8Length(text) + " bytes in UTF-8; at most " + MAX_DESCRIPTION_BYTES
                    + " (an agent gets it as one command-line argument, which Linux caps at 128 KiB)"));
        } else if (text.indexOf('\0') >= 0) {
            errors.add(new FieldError("description", "must not contain NUL characters"));
        }
        return text;
    }

    /** @param ignored collects unknown keys of the entries, as {@code cli_assignments[i].key} (a typo like "timout") */
    private List<Assignment> assignments(JsonNode node, List<FieldError> errors, List<String> ignored) {
        List<Assignment> result = new ArrayList<>();
        if (node == null || node.isNull()) {
            errors.add(new FieldError("cli_assignments", "is required: a list like [{\"cli_name\": \"claude-code\", \"timeout\": 300}]"));
            return result;
        }
        if (!node.isArray()) {
            errors.add(new FieldError("cli_assignments", "must be an array of {cli_name, timeout} objects"));
            return result;
        }
        if (node.isEmpty()) {
            errors.add(new FieldError("cli_assignments", "must name at least one agent"));
            return result;
        }
        if (node.size() > MAX_ASSIGNMENTS) {
            errors.add(new FieldError("cli_assignments", "has " + node.size() + " entries; at most " + MAX_ASSIGNMENTS));
            return result;
        }
        Set<String> seen = new HashSet<>();
        for (int i = 0; i < node.size(); i++) {
            String path = "cli_assignments[" + i + "]";
            JsonNode entry = node.get(i);
            if (!entry.isObject()) {
                errors.add(new FieldError(path, "must be an object with cli_name and timeout"));
                continue;
            }
            for (Iterator<String> keys = entry.fieldNames(); keys.hasNext(); ) {
                String key = keys.next();
                if (!key.equals("cli_name") && !key.equals("timeout")) {
                    ignored.add(path + "." + key);
                }
            }
            JsonNode name = entry.get("cli_name");
            String cliName = null;
            if (name == null || name.isNull()) {
                errors.add(new FieldError(path + ".cli_name", "is required; configured agents: " + agents.names()));
            } else if (!name.isTextual()) {
                errors.add(new FieldError(path + ".cli_name", "must be a string"));
            } else if (agents.find(name.asText()).isEmpty()) {
                errors.add(new FieldError(path + ".cli_name", "unknown agent '" + ErrorBody.printable(name.asText())
                        + "'; configured agents: " + agents.names()));
            } else if (!seen.add(name.asText())) {
                errors.add(new FieldError(path + ".cli_name", "agent '" + name.asText() + "' is assigned twice"));
            } else {
                cliName = name.asText();
            }
            int timeout = settings.defaultCliTimeout();
            JsonNode t = entry.get("timeout");
            if (t != null && !t.isNull()) {
                if (!t.isIntegralNumber() || !t.canConvertToInt()) {
                    errors.add(new FieldError(path + ".timeout", "must be a whole number of seconds between 1 and "
                            + KageSettings.MAX_CLI_TIMEOUT));
                    continue;
                }
                timeout = t.intValue();
                if (timeout < 1 || timeout > KageSettings.MAX_CLI_TIMEOUT) {
                    errors.add(new FieldError(path + ".timeout", "is " + timeout + "; must be between 1 and "
                            + KageSettings.MAX_CLI_TIMEOUT + " seconds"));
                    continue;
                }
            }
            if (cliName != null) {
                result.add(new Assignment(cliName, timeout));
            }
        }
        return result;
    }

    private static Priority priority(JsonNode node, List<FieldError> errors) {
        if (node == null || node.isNull()) {
            return Priority.NORMAL;
        }
        if (node.isTextual()) {
            var priority = Priority.fromWireName(node.asText());
            if (priority.isPresent()) {
                return priority.get();
            }
        }
        errors.add(new FieldError("priority", "must be one of high, normal, low"));
        return Priority.NORMAL;
    }

    private static String repo(JsonNode node, List<FieldError> errors) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (!node.isTextual()) {
            errors.add(new FieldError("repo", "must be a string: a path or git URL"));
            return null;
        }
        String repo = node.asText();
        if (repo.isBlank() || repo.length() > MAX_REPO_CHARS) {
            errors.add(new FieldError("repo", "must be a path or git URL of 1 to " + MAX_REPO_CHARS + " characters"));
        } else if (loneSurrogate(repo) >= 0) {
            errors.add(new FieldError("repo", LONE_SURROGATE + describe(repo)));
        } else if (repo.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
            errors.add(new FieldError("repo", "must not contain control characters"));
        } else if (repo.startsWith("-")) {
            errors.add(new FieldError("repo", "must not start with '-'"));
        } else if (repo.contains("::")) {
            errors.add(new FieldError("repo", "transport '" + ErrorBody.printable(repo.substring(0, repo.indexOf("::")))
                    + "::' is not allowed; use a path or an http(s), ssh, git or file URL"));
        } else if (!repo.startsWith("/") && !URL_REPO.matcher(repo).matches() && !SCP_REPO.matcher(repo).matches()) {
            errors.add(new FieldError("repo", "must be an absolute path or an http(s), ssh, git or file URL"));
        }
        return repo;
    }

    private static String baseBranch(JsonNode node, List<FieldError> errors) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (!node.isTextual() || !GitRefs.isValidBranchName(node.asText())) {
            errors.add(new FieldError("base_branch", "must be a git branch name such as main or release/1.2 "
                    + "(letters, digits, '.', '_', '-', '/'; no '..', no leading '-')"));
            return null;
        }
        return node.asText();
    }

    private static Long budget(JsonNode node, List<FieldError> errors) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (!node.isObject()) {
            errors.add(new FieldError("budget", "must be an object such as {\"max_tokens\": 20000}"));
            return null;
        }
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!name.equals("max_tokens")) {
                errors.add(new FieldError("budget." + ErrorBody.printable(name), "is not supported by this version; use budget.max_tokens"));
            }
        }
        JsonNode max = node.get("max_tokens");
        if (max == null || max.isNull()) {
            return null;
        }
        if (!max.isIntegralNumber() || !max.canConvertToLong() || max.longValue() < 1 || max.longValue() > MAX_TOKENS_LIMIT) {
            errors.add(new FieldError("budget.max_tokens", "must be a whole number of tokens between 1 and " + MAX_TOKENS_LIMIT));
            return null;
        }
        return max.longValue();
    }

    private String metadata(JsonNode node, List<FieldError> errors) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (!node.isObject()) {
            errors.add(new FieldError("metadata", "must be a JSON object"));
            return null;
        }
        String text = node.toString();
        if (text.getBytes(StandardCharsets.UTF_8).length > MAX_METADATA_BYTES) {
            errors.add(new FieldError("metadata", "is larger than " + MAX_METADATA_BYTES + " bytes"));
            return null;
        }
        if (loneSurrogate(text) >= 0) {
            errors.add(new FieldError("metadata", LONE_SURROGATE + describe(text)));
            return null;
        }
        if (containsNul(node)) {
            errors.add(new FieldError("metadata", "must not contain NUL characters"));
            return null;
        }
        if (numberOutOfRange(node)) {
            errors.add(new FieldError("metadata", "has a number Postgres cannot store (beyond 1e" + MAX_EXPONENT
                    + " or below 1e-" + MAX_EXPONENT + ")"));
            return null;
        }
        return text;
    }

    /**
     * Decimal exponents metadata numbers may have, either way: a double's range. Postgres's jsonb (numeric) stores far
     * more, but writes every digit out (1e20000 is 20,001 characters), and refuses 1e200000.
     */
    static final int MAX_EXPONENT = 308;

    /** Whether a number anywhere in the tree is beyond {@link #MAX_EXPONENT} (Postgres would refuse the row). */
    private static boolean numberOutOfRange(JsonNode node) {
        if (node.isNumber()) {
            java.math.BigDecimal value = node.decimalValue();
            if (value.signum() == 0) {
                return false;
            }
            long exponent = (long) value.precision() - value.scale() - 1;
            return exponent > MAX_EXPONENT || exponent < -MAX_EXPONENT;
        }
        for (JsonNode child : node) {
            if (numberOutOfRange(child)) {
                return true;
            }
        }
        return false;
    }

    /**
     * Whether a string or name anywhere in the tree holds a NUL (which Postgres's jsonb refuses). Read from the tree, not
     * the serialized text: there an escaped backslash before "u0000" (a Windows path) looked like an escaped NUL.
     */
    private static boolean containsNul(JsonNode node) {
        if (node.isTextual()) {
            return node.textValue().indexOf('\0') >= 0;
        }
        for (Iterator<java.util.Map.Entry<String, JsonNode>> fields = node.fields(); fields.hasNext(); ) {
            java.util.Map.Entry<String, JsonNode> field = fields.next();
            if (field.getKey().indexOf('\0') >= 0 || containsNul(field.getValue())) {
                return true;
            }
        }
        if (node.isArray()) {
            for (JsonNode element : node) {
                if (containsNul(element)) {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * The index of the first UTF-16 surrogate without its partner, or -1. JSON lets a string escape one ({@code "\\ud800"}),
     * but it is no character: Postgres and an agent's argv would get {@code ?} instead, so such a request is refused.
     */
    static int loneSurrogate(String text) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                return i;
            }
        }
        return -1;
    }

    private static String describe(String text) {
        int at = loneSurrogate(text);
        return String.format("\\u%04x at character %d", (int) text.charAt(at), at);
    }

    private static final String LONE_SURROGATE = "must be valid Unicode: it has a lone UTF-16 surrogate ";


    /** UTF-8 length of text without lone surrogates (checked before), without encoding it. */
    private static long utf8Length(String text) {
        long bytes = 0;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : Character.isHighSurrogate(c) ? 2 : Character.isLowSurrogate(c) ? 2 : 3;
        }
        return bytes;
    }
}
