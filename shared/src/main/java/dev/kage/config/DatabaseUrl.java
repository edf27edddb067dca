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
        // The authority is read by hand: java.net.URI gives no host for a name with '_' (a compose service, kage_db).
        String authority = uri.getRawAuthority();
        if (authority == null || authority.isEmpty()) {
            throw new ConfigException(variable + ": no host given; expected e.g. " + DEFAULT);
        }
        int at = authority.lastIndexOf('@');
        String userInfo = at < 0 ? null : authority.substring(0, at);
        String hostPort = authority.substring(at + 1);
        String host;
        String portText = null;
        if (hostPort.startsWith("[")) {
            int close = hostPort.indexOf(']');
            if (close < 0) {
                throw new ConfigException(variable + ": an IPv6 host needs its closing ']'; expected e.g. " + DEFAULT);
            }
            host = hostPort.substring(0, close + 1);
            if (hostPort.length() > close + 1) {
                if (hostPort.charAt(close + 1) != ':') {
                    throw new ConfigException(variable + ": unexpected text after the host; expected e.g. " + DEFAULT);
                }
                portText = hostPort.substring(close + 2);
            }
        } else {
            int colon = hostPort.lastIndexOf(':');
            host = colon < 0 ? hostPort : hostPort.substring(0, colon);
            portText = colon < 0 ? null : hostPort.substring(colon + 1);
        }
        if (host.isEmpty() || host.equals("[]")) {
            throw new ConfigException(variable + ": no host given; expected e.g. " + DEFAULT);
        }
        int port = 5432;
        if (portText != null && !portText.isEmpty()) {
            try {
                port = Integer.parseInt(portText);
            } catch (NumberFormatException e) {
                port = -1;
            }
            if (port < 1 || port > 65_535) {
                // The text is shown only when it is digits: a password with an unescaped '/' ends the authority early,
                // and what follows its ':' (the password's start) is read as the port.
                // Not quoted: with an unescaped '/' in a password, what follows its ':' (digits or not) is read here.
                throw new ConfigException(variable + ": the port is not a number from 1 to 65535" + UNESCAPED);
            }
        }
        // The user and password end at the first '/', '?' or '#': an '@' after it (in the database name, before the first
        // parameter's '=', or in a fragment) is the rest of a password, read as the database name or a parameter. An '@'
        // in a parameter's value (user=kage@server) is one.
        String query = uri.getRawQuery();
        String firstParameterName = query == null ? "" : query.split("[=&]", 2)[0];
        if (Optional.ofNullable(uri.getRawPath()).orElse("").contains("@") || firstParameterName.contains("@")
                || Optional.ofNullable(uri.getRawFragment()).orElse("").contains("@")) {
            throw new ConfigException(variable + ": an '@' after the host" + UNESCAPED);
        }
        String database = Optional.ofNullable(uri.getPath()).map(p -> p.replaceFirst("^/", "")).filter(p -> !p.isEmpty())
                .orElseThrow(() -> new ConfigException(variable + ": no database name given; expected e.g. " + DEFAULT));
        String user = null;
        String password = null;
        if (userInfo != null) {
            String[] parts = userInfo.split(":", 2);
            user = decode(variable, parts[0]);
            password = parts.length > 1 ? decode(variable, parts[1]) : null;
        }
        String jdbc = "jdbc:postgresql://" + host + ":" + port + "/" + database
                + (uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery());
        return new DatabaseUrl(jdbc, user, password);
    }

    private static final String UNESCAPED = " (a user name or password holding '/', '?', '#' or '@' must be "
            + "percent-encoded: %2F, %3F, %23, %40); expected e.g. " + DEFAULT;

    /** Percent-decoding of a URL's user or password: a '+' stays a '+' (it means a space only in form data). */
    private static String decode(String variable, String raw) {
        try {
            return URLDecoder.decode(raw.replace("+", "%2B"), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            throw new ConfigException(variable + ": the user or password holds a '%' that is no percent-escape (write a "
                    + "literal '%' as %25)");
        }
    }

    private static final java.util.regex.Pattern QUERY_SECRET =
            java.util.regex.Pattern.compile("(?i)(password|sslpassword)=[^&\\s]*");

    /**
     * {@code text} (a JDBC URL, or an error that quotes one) with the values of {@code password} and {@code sslpassword}
     * parameters masked: a JDBC URL can carry the password only there.
     */
    public static String masked(String text) {
        return text == null ? null : QUERY_SECRET.matcher(text).replaceAll("$1=***");
    }

    /** The JDBC URL as it may be logged. */
    public String shown() {
        return masked(jdbcUrl);
    }

    @Override
    public String toString() {
        return "DatabaseUrl[" + shown() + (user == null ? "" : ", user=" + user) + (password == null ? "" : ", password=***") + "]";
    }
}
