package dev.kage.config;

import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.Function;

/**
 * Reads configuration variables by their environment-variable name ({@code MAX_TOKENS_PER_TASK}) and
 * parses them with messages that name the variable. Immutable and thread-safe.
 *
 * <p>The lookup is a function so the same parsing serves the process environment, a Micronaut
 * {@code Environment} (where tests set properties) and plain maps in unit tests.
 */
public final class Env {
    private final Function<String, Optional<String>> lookup;

    public Env(Function<String, Optional<String>> lookup) {
        this.lookup = lookup;
    }

    /** The process environment. */
    public static Env system() {
        return of(System.getenv());
    }

    public static Env of(Map<String, String> values) {
        return new Env(name -> Optional.ofNullable(values.get(name)));
    }

    /** A value that is set and not blank, trimmed. */
    public Optional<String> get(String name) {
        return lookup.apply(name).map(String::trim).filter(v -> !v.isEmpty());
    }

    public String string(String name, String defaultValue) {
        return get(name).orElse(defaultValue);
    }

    public long positiveLong(String name, long defaultValue) {
        Optional<String> raw = get(name);
        if (raw.isEmpty()) {
            return defaultValue;
        }
        try {
            long value = Long.parseLong(raw.get());
            if (value > 0) {
                return value;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be a positive integer (default " + defaultValue + ")");
    }

    /** A whole number from {@code min} to {@code max}; a bad value fails with a {@link ConfigException} naming the variable. */
    public long longBetween(String name, long min, long max, long defaultValue) {
        Optional<String> raw = get(name);
        if (raw.isEmpty()) {
            return defaultValue;
        }
        try {
            long value = Long.parseLong(raw.get().trim());
            if (value >= min && value <= max) {
                return value;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be a whole number from " + min + " to " + max + " (default "
                + defaultValue + ")");
    }

    public int positiveInt(String name, int defaultValue) {
        long value = positiveLong(name, defaultValue);
        if (value > Integer.MAX_VALUE) {
            throw new ConfigException(name + "=" + value + ": must be at most " + Integer.MAX_VALUE);
        }
        return (int) value;
    }

    /** An integer from {@code min} to {@code max}; a bad value fails with a {@link ConfigException} naming the variable. */
    public int intBetween(String name, int min, int max, int defaultValue) {
        Optional<String> raw = get(name);
        if (raw.isEmpty()) {
            return defaultValue;
        }
        try {
            int value = Integer.parseInt(raw.get().trim());
            if (value >= min && value <= max) {
                return value;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be an integer from " + min + " to " + max + " (default " + defaultValue + ")");
    }

    public double positiveDouble(String name, double defaultValue) {
        Optional<String> raw = get(name);
        if (raw.isEmpty()) {
            return defaultValue;
        }
        try {
            double value = Double.parseDouble(raw.get());
            if (value > 0 && Double.isFinite(value)) {
                return value;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the rule
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be a positive number (default " + defaultValue + ")");
    }

    /** A fraction in (0, 1], such as {@code TOKEN_WARNING_THRESHOLD}. */
    public double fraction(String name, double defaultValue) {
        double value = positiveDouble(name, defaultValue);
        if (value > 1.0) {
            throw new ConfigException(name + "=" + value + ": must be a fraction between 0 and 1, e.g. 0.8 (default " + defaultValue + ")");
        }
        return value;
    }

    public boolean bool(String name, boolean defaultValue) {
        Optional<String> raw = get(name);
        if (raw.isEmpty()) {
            return defaultValue;
        }
        return switch (raw.get().toLowerCase(Locale.ROOT)) {
            case "true", "1", "yes", "on" -> true;
            case "false", "0", "no", "off" -> false;
            default -> throw new ConfigException(name + "=" + raw.get() + ": must be true or false (default " + defaultValue + ")");
        };
    }

    public <E extends Enum<E>> E oneOf(String name, Class<E> type, E defaultValue) {
        Optional<String> raw = get(name);
        if (raw.isEmpty()) {
            return defaultValue;
        }
        for (E candidate : type.getEnumConstants()) {
            if (candidate.name().equalsIgnoreCase(raw.get())) {
                return candidate;
            }
        }
        StringBuilder allowed = new StringBuilder();
        for (E candidate : type.getEnumConstants()) {
            allowed.append(allowed.isEmpty() ? "" : "|").append(candidate.name().toLowerCase(Locale.ROOT));
        }
        throw new ConfigException(name + "=" + raw.get() + ": must be one of " + allowed + " (default "
                + defaultValue.name().toLowerCase(Locale.ROOT) + ")");
    }
}
