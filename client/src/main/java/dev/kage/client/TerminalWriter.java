package dev.kage.client;

import java.io.FilterWriter;
import java.io.IOException;
import java.io.Writer;

/**
 * What the CLI prints goes through this: a character that drives a terminal instead of showing on it is written as its
 * escape, {@code \u001b} for ESC. The text comes from the server and, through it, from agents (an error message, a diff
 * stat, a description a tenant wrote): an agent a repository's files steered could otherwise set the terminal's title,
 * write the clipboard (OSC 52) or hide text ({@code \r}, right-to-left overrides). Escaped: C0 controls but tab and line
 * feed, DEL, C1 controls, and the bidirectional embeddings, overrides and isolates. The form is also a valid JSON
 * escape, so {@code --json} output stays JSON. Not thread-safe (as the writer it wraps).
 */
final class TerminalWriter extends FilterWriter {
    TerminalWriter(Writer out) {
        super(out);
    }

    /**
     * A CR before an LF within one write: the line separator where it is CRLF ({@code println} writes it in one call).
     * A CR alone, which moves back over what was printed, is escaped.
     */
    private static boolean lineEnd(char c, char next) {
        return c == '\r' && next == '\n';
    }

    /** Whether {@code c} is written as its escape. */
    static boolean escaped(int c) {
        return (c < 0x20 && c != '\n' && c != '\t') || (c >= 0x7f && c <= 0x9f) || (c >= 0x202a && c <= 0x202e)
                || (c >= 0x2066 && c <= 0x2069);
    }

    @Override
    public void write(int c) throws IOException {
        if (escaped(c)) {
            out.write(String.format("\\u%04x", c));
        } else {
            out.write(c);
        }
    }

    @Override
    public void write(char[] chars, int offset, int length) throws IOException {
        int from = offset;
        for (int i = offset; i < offset + length; i++) {
            if (escaped(chars[i]) && !lineEnd(chars[i], i + 1 < offset + length ? chars[i + 1] : 0)) {
                out.write(chars, from, i - from);
                write(chars[i]);
                from = i + 1;
            }
        }
        out.write(chars, from, offset + length - from);
    }

    @Override
    public void write(String text, int offset, int length) throws IOException {
        write(text.toCharArray(), offset, length);
    }
}
