package dev.kage.worker.run;

import java.util.Collection;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Replaces secret values (the agent's passed-through environment variables) with {@code ***} in text that will be
 * stored or logged, and the credentials of any URL in it ({@code https://user:token@host} → {@code https://***@host}).
 * Output reaches it already cut (a capped stream keeps its head and tail, a patch its first 64 KiB): where a cut went
 * through a secret, what is left of it at the cut is masked too, down to {@link #MIN_EDGE} characters. Immutable and
 * thread-safe.
 */
final class Redactor {
    /** Values shorter than this are not treated as secrets: redacting "1" would garble every number. */
    static final int MIN_SECRET_LENGTH = 6;
    /** The shortest piece of a secret masked at a cut: shorter ones give nothing away and are common text. */
    static final int MIN_EDGE = 4;
    /** The marks CappedOutput and the worktree's patch leave where they cut text out. */
    private static final Pattern CUT = Pattern.compile("\\n\\[\\.\\.\\. [^\\]\\n]{1,80} omitted \\.\\.\\.\\]\\n");
    private final List<String> secrets;

    Redactor(Collection<String> values) {
        // Each value as set and without the whitespace around it: a key read from a file ends in a newline, and is sent
        // (so echoed back in an error) without it.
        this.secrets = values.stream().filter(v -> v != null).flatMap(v -> java.util.stream.Stream.of(v, v.strip()))
                .filter(v -> v.length() >= MIN_SECRET_LENGTH).distinct()
                .sorted((a, b) -> b.length() - a.length()).toList();
    }

    String redact(String text) {
        if (text == null) {
            return null;
        }
        String out = dev.kage.task.UrlCredentials.mask(text);
        for (String secret : secrets) {
            out = out.replace(secret, "***");
        }
        if (secrets.isEmpty()) {
            return out;
        }
        // Each stretch between cuts (and the text's own ends, which may be cuts too) loses what it holds of a secret
        // at its edges.
        StringBuilder masked = new StringBuilder(out.length());
        Matcher cut = CUT.matcher(out);
        int from = 0;
        while (cut.find()) {
            masked.append(maskEdges(out.substring(from, cut.start()))).append(cut.group());
            from = cut.end();
        }
        return masked.append(maskEdges(out.substring(from))).toString();
    }

    private String maskEdges(String piece) {
        String out = piece;
        for (String secret : secrets) {
            for (int k = Math.min(secret.length() - 1, out.length()); k >= MIN_EDGE; k--) {
                if (out.startsWith(secret.substring(secret.length() - k))) {
                    out = "***" + out.substring(k);
                    break;
                }
            }
            for (int k = Math.min(secret.length() - 1, out.length()); k >= MIN_EDGE; k--) {
                if (out.endsWith(secret.substring(0, k))) {
                    out = out.substring(0, out.length() - k) + "***";
                    break;
                }
            }
        }
        return out;
    }
}
