package dev.kage.config;

import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Optional;

/**
 * A Postgres location given either in libpq URL form ({@code postgresql://user:secret@host:5432/kage})
 * or as a JDBC URL ({@code jdbc:postgresql://host:5432/kage?user=postgres}). Immutable.
 * {@link #toString()} never shows the password.
 *
 * @param jdbcUrl  the JDBC URL without user or password
 * @param user     the user name, or {@code null} to let the driver choose
 * @param password the password, or {@code null}
 */
public record DatabaseUrl(String jdbcUrl, String user, String password) {

    public static final String DEFAULT = "postgresql://postgres@127.0.0.1:5432/kage";

    /**
     * Parses {@code value}; {@code variable} names the setting in error messages.
     *
     * @throws ConfigException when the value is not a Postgres URL
     */
    public static DatabaseUrl parse(String variable, String value) {
        if (value.startsWith("jdbc:postgresql:")) {
            return new DatabaseUrl(value, null, null);
        }
        URI uri;
        try {
            uri = new URI(value);
        } catch (URISyntaxException e) {
            throw new ConfigException(variable + ": not a URL (" + e.getReason() + "); expected e.g. " + DEFAULT);
        }
        String scheme = uri.getScheme();
        if (!"postgresql".equals(scheme) && !"postgres".equals(scheme)) {
            throw new ConfigException(variable + ": scheme must be postgresql:// or jdbc:postgresql:, e.g. " + DEFAULT);
        }
        if (uri.getHost() == null) {
            throw new ConfigException(variable + ": no host given; expected e.g. " + DEFAULT);
        }
        String database = Optional.ofNullable(uri.getPath()).map(p -> p.replaceFirst("^/", "")).filter(p -> !p.isEmpty())
                .orElseThrow(() -> new ConfigException(variable + ": no database name given; expected e.g. " + DEFAULT));
        String user = null;
        String password = null;
        if (uri.getRawUserInfo() != null) {
            String[] parts = uri.getRawUserInfo().split(":", 2);
            user = decode(parts[0]);
            password = parts.length > 1 ? decode(parts[1]) : null;
        }
        String host = uri.getHost().contains(":") && !uri.getHost().startsWith("[") ? "[" + uri.getHost() + "]" : uri.getHost();
        int port = uri.getPort() > 0 ? uri.getPort() : 5432;
        String jdbc = "jdbc:postgresql://" + host + ":" + port + "/" + database
                + (uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery());
        return new DatabaseUrl(jdbc, user, password);
    }

    private static String decode(String raw) {
        return URLDecoder.decode(raw, StandardCharsets.UTF_8);
    }

    @Override
    public String toString() {
        return "DatabaseUrl[" + jdbcUrl + (user == null ? "" : ", user=" + user) + (password == null ? "" : ", password=***") + "]";
    }
}
