package dev.kage.client;

import java.io.IOException;
import java.io.Reader;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;

/**
 * Where {@code kage} sends its requests and with which key, and where each came from. Each value is taken from the
 * first of: the flag ({@code --url}, {@code --key}), the environment ({@code KAGE_URL}, {@code KAGE_API_KEY}), the
 * config file ({@code url=}, {@code key=}), the default ({@code http://127.0.0.1:8003}; no default key). The config
 * file is {@code --config}, else {@code KAGE_CONFIG}, else {@code $XDG_CONFIG_HOME/kage/config}, else
 * {@code ~/.config/kage/config}; it is a properties file. Immutable.
 *
 * @param url       the coordinator's base URL, without a trailing slash
 * @param key       the API key, or null when none is configured
 * @param urlSource where {@code url} came from, for people ({@code --url}, {@code KAGE_URL}, a file, {@code default})
 * @param keySource where {@code key} came from, or null
 * @param file      the config file looked at (it may not exist)
 */
public record ClientConfig(String url, String key, String urlSource, String keySource, Path file) {
    public static final String DEFAULT_URL = "http://127.0.0.1:8003";
    public static final String URL_ENV = "KAGE_URL";
    public static final String KEY_ENV = "KAGE_API_KEY";
    public static final String CONFIG_ENV = "KAGE_CONFIG";

    /** Never the key itself. */
    @Override
    public String toString() {
        return "ClientConfig[url=" + url + " (" + urlSource + "), key=" + (key == null ? "none" : keyPrefix(key)) + "]";
    }

    /**
     * Resolves the configuration.
     *
     * @param flagUrl    {@code --url}, or null
     * @param flagKey    {@code --key}, or null
     * @param flagConfig {@code --config}, or null; when given, the file must exist
     * @param env        the environment
     * @param home       the user's home folder
     * @throws ClientException (usage) for an unreadable config file, a URL that is not http(s) (or whose port is not
     *                         1-65535), or a key that an HTTP header cannot carry (anything but visible ASCII)
     */
    public static ClientConfig resolve(String flagUrl, String flagKey, Path flagConfig, Map<String, String> env, Path home) {
        Path file;
        boolean explicit;
        if (flagConfig != null) {
            file = flagConfig;
            explicit = true;
        } else if (notBlank(env.get(CONFIG_ENV))) {
            file = Path.of(env.get(CONFIG_ENV));
            explicit = true;
        } else {
            String xdg = env.get("XDG_CONFIG_HOME");
            file = (notBlank(xdg) ? Path.of(xdg) : home.resolve(".config")).resolve("kage").resolve("config");
            explicit = false;
        }
        Properties props = new Properties();
        if (Files.isRegularFile(file)) {
            try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
                props.load(reader);
            } catch (IOException | IllegalArgumentException e) {
                throw ClientException.usage("cannot read the config file " + file + ": " + e.getMessage());
            }
        } else if (explicit) {
            throw ClientException.usage("config file " + file + " does not exist (given by "
                    + (flagConfig != null ? "--config" : CONFIG_ENV) + ")");
        }

        String url;
        String urlSource;
        if (notBlank(flagUrl)) {
            url = flagUrl;
            urlSource = "--url";
        } else if (notBlank(env.get(URL_ENV))) {
            url = env.get(URL_ENV);
            urlSource = URL_ENV;
        } else if (notBlank(props.getProperty("url"))) {
            url = props.getProperty("url");
            urlSource = "url= in " + file;
        } else {
            url = DEFAULT_URL;
            urlSource = "default";
        }
        url = checkUrl(url.trim(), urlSource);

        String key = null;
        String keySource = null;
        if (notBlank(flagKey)) {
            key = flagKey;
            keySource = "--key";
        } else if (notBlank(env.get(KEY_ENV))) {
            key = env.get(KEY_ENV);
            keySource = KEY_ENV;
        } else if (notBlank(props.getProperty("key"))) {
            key = props.getProperty("key");
            keySource = "key= in " + file;
        }
        if (key != null) {
            key = key.trim();
            checkToken(key, keySource + ": the API key");
        }
        return new ClientConfig(url, key, urlSource, keySource, file);
    }

    /**
     * Refuses a value sent as a header ({@code X-API-Key}, {@code Idempotency-Key}) unless it is visible ASCII without
     * spaces, as keys are; the message shows only the value's first characters and the offending one's code point.
     *
     * @param what what the value is, for the message ({@code "--key: the API key"})
     * @throws ClientException (usage)
     */
    static void checkToken(String value, String what) {
        for (int i = 0; i < value.length(); ) {
            int cp = value.codePointAt(i);
            if (cp < 0x21 || cp > 0x7E) {
                throw ClientException.usage(what + " (" + keyPrefix(value) + ") has " + String.format("U+%04X", cp)
                        + (Character.isWhitespace(cp) || Character.isSpaceChar(cp) ? " (a space)" : "")
                        + " at character " + (value.codePointCount(0, i) + 1)
                        + "; only visible ASCII without spaces can be sent (a copied key with curly quotes?)");
            }
            i += Character.charCount(cp);
        }
    }

    /**
     * The key, or a usage error saying the three ways to give one.
     *
     * @throws ClientException (usage) when no key is configured
     */
    public String requireKey() {
        if (key == null) {
            throw ClientException.usage("no API key: set " + KEY_ENV + ", put key=<key> in " + file + ", or pass --key");
        }
        return key;
    }

    /**
     * What may be shown of a key: a server-made key's first 11 characters (its {@code prefix} in {@code keys list}),
     * else its first 4, followed by an ellipsis.
     */
    public static String keyPrefix(String key) {
        int shown = key.startsWith("kb_") ? 11 : 4;
        int length = key.codePointCount(0, key.length());
        return key.substring(0, key.offsetByCodePoints(0, Math.min(length, length <= shown ? 2 : shown))) + "…";
    }

    private static String checkUrl(String url, String source) {
        String trimmed = url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
        try {
            URI uri = new URI(trimmed);
            if (("http".equals(uri.getScheme()) || "https".equals(uri.getScheme())) && uri.getHost() != null
                    && uri.getQuery() == null && uri.getFragment() == null) {
                if (uri.getPort() == 0 || uri.getPort() > 65535) {
                    throw ClientException.usage(source + ": '" + url + "' has port " + uri.getPort() + "; a port is 1-65535");
                }
                return trimmed;
            }
        } catch (URISyntaxException e) {
            // reported below
        }
        throw ClientException.usage(source + ": '" + url + "' is not an http(s) URL such as " + DEFAULT_URL);
    }

    private static boolean notBlank(String value) {
        return value != null && !value.isBlank();
    }
}
