package dev.kage.config;

import dev.kage.KageException;

/**
 * A configuration value is missing or invalid. The message always names the variable, the value, the
 * rule and how to fix it, e.g. {@code MAX_REQUESTS_PER_MINUTE=abc: must be a positive integer}.
 */
public class ConfigException extends KageException {
    public ConfigException(String message) {
        super(message, false);
    }
}
