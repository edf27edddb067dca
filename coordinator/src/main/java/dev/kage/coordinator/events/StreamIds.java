package dev.kage.coordinator.events;

import java.util.Optional;
import java.util.regex.Pattern;

/** Redis stream entry ids ({@code <ms>-<seq>}, both unsigned 64-bit): parsing, order, successor. */
public final class StreamIds {
    /** Before every real entry id. */
    static final String ZERO = "0-0";

    private static final Pattern FORM = Pattern.compile("\\d{1,20}-\\d{1,20}");

    private StreamIds() {
    }

    /** The id in canonical form, when the text is a stream entry id (both parts within 64 bits, as Redis takes them). */
    public static Optional<String> parse(String text) {
        if (text == null || !FORM.matcher(text.trim()).matches()) {
            return Optional.empty();
        }
        String[] parts = text.trim().split("-");
        try {
            return Optional.of(Long.toUnsignedString(Long.parseUnsignedLong(parts[0])) + "-"
                    + Long.toUnsignedString(Long.parseUnsignedLong(parts[1])));
        } catch (NumberFormatException beyond64Bits) {
            return Optional.empty();
        }
    }

    static int compare(String a, String b) {
        long[] x = split(a);
        long[] y = split(b);
        int byTime = Long.compareUnsigned(x[0], y[0]);
        return byTime != 0 ? byTime : Long.compareUnsigned(x[1], y[1]);
    }

    /** The smallest id after {@code id}, for an XRANGE that starts after it. */
    static String successor(String id) {
        long[] parts = split(id);
        if (parts[1] == -1L) {
            return Long.toUnsignedString(parts[0] + 1) + "-0";
        }
        return Long.toUnsignedString(parts[0]) + "-" + Long.toUnsignedString(parts[1] + 1);
    }

    /** The id's time part: milliseconds since the epoch on Redis's clock when the entry was added with an automatic id. */
    static long millis(String id) {
        return split(id)[0];
    }

    private static long[] split(String id) {
        int dash = id.indexOf('-');
        return new long[] {Long.parseUnsignedLong(id.substring(0, dash)), Long.parseUnsignedLong(id.substring(dash + 1))};
    }
}
