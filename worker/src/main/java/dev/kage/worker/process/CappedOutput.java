package dev.kage.worker.process;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * Collects a stream's bytes keeping at most {@code headBytes} from the start and {@code tailBytes}
 * from the end, counting what falls between, so a flooding process cannot exhaust memory.
 * Written by one reader thread; read after that thread ends.
 */
public final class CappedOutput {
    private final int headLimit;
    private final byte[] tail;
    private final ByteArrayOutputStream head = new ByteArrayOutputStream();
    private long total;
    private int tailStart;
    private int tailLength;

    public CappedOutput(int headBytes, int tailBytes) {
        this.headLimit = headBytes;
        this.tail = new byte[tailBytes];
    }

    /** Reads {@code in} to its end. */
    public void drain(InputStream in) throws IOException {
        drain(in, (chunk, length) -> { });
    }

    /** Reads {@code in} to its end, handing each chunk to {@code listener} after keeping it. */
    public void drain(InputStream in, java.util.function.ObjIntConsumer<byte[]> listener) throws IOException {
        byte[] buffer = new byte[8192];
        int n;
        while ((n = in.read(buffer)) >= 0) {
            append(buffer, n);
            listener.accept(buffer, n);
        }
    }

    synchronized void append(byte[] buffer, int length) {
        for (int i = 0; i < length; i++) {
            total++;
            if (head.size() < headLimit) {
                head.write(buffer[i]);
            } else if (tail.length > 0) {
                tail[(tailStart + tailLength) % tail.length] = buffer[i];
                if (tailLength < tail.length) {
                    tailLength++;
                } else {
                    tailStart = (tailStart + 1) % tail.length;
                }
            }
        }
    }

    /** Bytes the process wrote in all. */
    public synchronized long totalBytes() {
        return total;
    }

    /** Bytes neither kept at the head nor at the tail. */
    public synchronized long droppedBytes() {
        return total - head.size() - tailLength;
    }

    /** The kept text; when bytes were dropped, a marker line says how many. */
    public synchronized String text() {
        StringBuilder out = new StringBuilder(head.toString(StandardCharsets.UTF_8));
        if (tailLength > 0) {
            byte[] ordered = new byte[tailLength];
            for (int i = 0; i < tailLength; i++) {
                ordered[i] = tail[(tailStart + i) % tail.length];
            }
            if (droppedBytes() > 0) {
                out.append("\n[... ").append(droppedBytes()).append(" bytes omitted ...]\n");
            }
            out.append(new String(ordered, StandardCharsets.UTF_8));
        }
        return out.toString();
    }

    /** Only the kept tail, or the head when nothing spilled past it: where a final JSON result is. */
    public synchronized String tailText() {
        if (tailLength == 0) {
            return head.toString(StandardCharsets.UTF_8);
        }
        byte[] ordered = new byte[tailLength];
        for (int i = 0; i < tailLength; i++) {
            ordered[i] = tail[(tailStart + i) % tail.length];
        }
        return new String(ordered, StandardCharsets.UTF_8);
    }
}
