package dev.kage.task;

import java.util.regex.Pattern;

/**
 * Masks the credentials of URLs in text ({@code https://user:token@host} → {@code https://***@host}): an operator's
 * repository URL may carry a token, and git repeats it in its messages. Stateless and thread-safe.
 */
public final class UrlCredentials {
    /**
     * A URL's scheme (from the start of its word, at most 32 characters) and its userinfo (any length: a JWT is long;
     * no character that ends a URL in text) up to the last {@code @} before the host: a password with an {@code @} left
     * unescaped ({@code https://bot:p@ss@host}) is masked whole, as git and libpq read it. A scheme starts only where a
     * word does, and the userinfo's scan stops at the next {@code /} (which every later scheme's {@code ://} holds), so
     * the scans after two schemes never overlap: a long text costs a linear scan, not a quadratic one.
     */
    private static final Pattern USERINFO = Pattern.compile(
            "(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,31}://)[^/\\s\"'<>?#]*@");

    private UrlCredentials() {
    }

    /** {@code text} with the userinfo of every URL in it masked; null for null. */
    public static String mask(String text) {
        return text == null ? null : USERINFO.matcher(text).replaceAll("$1***@");
    }
}
