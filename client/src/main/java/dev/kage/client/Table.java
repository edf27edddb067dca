package dev.kage.client;

import java.util.ArrayList;
import java.util.List;

/**
 * A text table: a header and rows, columns padded to their widest cell (as a terminal shows it: {@link Format#width}), two
 * spaces apart. Not thread-safe.
 */
final class Table {
    private final List<String[]> rows = new ArrayList<>();
    private final int columns;

    Table(String... header) {
        this.columns = header.length;
        rows.add(header);
    }

    Table row(Object... cells) {
        String[] row = new String[columns];
        for (int i = 0; i < columns; i++) {
            Object cell = i < cells.length ? cells[i] : null;
            row[i] = cell == null ? "-" : Format.oneLine(cell.toString());
        }
        rows.add(row);
        return this;
    }

    /** Rows besides the header. */
    int size() {
        return rows.size() - 1;
    }

    /** The table, each line ending with a newline; trailing spaces trimmed. */
    String render() {
        int[] width = new int[columns];
        for (String[] row : rows) {
            for (int i = 0; i < columns; i++) {
                width[i] = Math.max(width[i], Format.width(row[i]));
            }
        }
        StringBuilder out = new StringBuilder();
        for (String[] row : rows) {
            StringBuilder line = new StringBuilder();
            for (int i = 0; i < columns; i++) {
                line.append(row[i]);
                if (i < columns - 1) {
                    line.append(" ".repeat(width[i] - Format.width(row[i]) + 2));
                }
            }
            out.append(line.toString().stripTrailing()).append('\n');
        }
        return out.toString();
    }
}
