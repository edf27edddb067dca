package dev.kage.config;

import java.util.regex.Pattern;

/**
 * Validation of branch names that reach {@code git} as arguments. Stricter than
 * {@code git check-ref-format}: it also refuses names that could be read as options. Thread-safe.
 */
public final class GitRefs {
    private static final Pattern ALLOWED = Pattern.compile("[A-Za-z0-9._/-]{1,200}");

    private GitRefs() {
    }

    /** True for names like {@code main}, {@code release/1.2}; false for {@code -x}, {@code a..b}, {@code a/.b}. */
    public static boolean isValidBranchName(String name) {
        if (name == null || !ALLOWED.matcher(name).matches()) {
            return false;
        }
        if (name.startsWith("-") || name.startsWith("/") || name.endsWith("/") || name.endsWith(".")
                || name.endsWith(".lock") || name.contains("..") || name.contains("//") || name.equals("@")) {
            return false;
        }
        for (String part : name.split("/")) {
            if (part.startsWith(".") || part.endsWith(".lock")) {
                return false;
            }
        }
        return true;
    }
}
