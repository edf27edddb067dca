package dev.kage.e2e.chaos;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * HTTP/1.1 over a plain socket, so a request can carry what the JDK's client refuses to send (raw bytes in header
 * values, a wrong Content-Length, a malformed chunk, both Content-Length and Transfer-Encoding). One request per
 * connection ({@code Connection: close}); the request is written by its own thread while the answer is read, so a
 * server that answers (413) before reading a huge body is still heard. An event stream is not read past its headers.
 * Thread-safe (no state).
 */
final class RawHttp {
    private RawHttp() {
    }

    /**
     * @param status  the answer's status, or -1 when the server closed the connection without one
     * @param headers header names in lower case
     * @param problem why there is no status (an I/O error), else null
     */
    record Reply(int status, Map<String, List<String>> headers, String body, boolean eventStream, String problem) {
        String header(String name) {
            List<String> values = headers.get(name.toLowerCase(Locale.ROOT));
            return values == null || values.isEmpty() ? null : values.getFirst();
        }
    }

    /**
     * A request: {@code Host} and {@code Connection: close} first, then {@code headers} (name, raw value bytes as
     * ISO-8859-1 characters or UTF-8 when {@code utf8Headers}), then {@code Content-Length} unless {@code headers}
     * set it or {@code Transfer-Encoding}, then the body.
     */
    static byte[] request(String method, String target, List<String[]> headers, byte[] body, boolean utf8Headers) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        StringBuilder head = new StringBuilder(method).append(' ').append(target).append(" HTTP/1.1\r\n")
                .append("Host: 127.0.0.1\r\nConnection: close\r\n");
        boolean framed = false;
        for (String[] header : headers) {
            head.append(header[0]).append(": ").append(header[1]).append("\r\n");
            framed |= header[0].equalsIgnoreCase("Content-Length") || header[0].equalsIgnoreCase("Transfer-Encoding");
        }
        if (!framed && (body.length > 0 || !method.equals("GET"))) {
            head.append("Content-Length: ").append(body.length).append("\r\n");
        }
        head.append("\r\n");
        out.writeBytes(head.toString().getBytes(utf8Headers ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1));
        out.writeBytes(body);
        return out.toByteArray();
    }

    static Reply send(int port, byte[] request) {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 5_000);
            socket.setSoTimeout(15_000);
            OutputStream out = socket.getOutputStream();
            Thread writer = Thread.ofVirtual().start(() -> {
                try {
                    out.write(request);
                    out.flush();
                } catch (IOException ignored) {
                    // the server answered (and closed) before taking the whole request: its answer is what counts
                }
            });
            Reply reply = read(socket.getInputStream());
            writer.join(5_000);
            return reply;
        } catch (IOException e) {
            return new Reply(-1, Map.of(), "", false, e.getClass().getSimpleName() + ": " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Reply(-1, Map.of(), "", false, "interrupted");
        }
    }

    private static Reply read(InputStream in) throws IOException {
        ByteArrayOutputStream headBytes = new ByteArrayOutputStream();
        int matched = 0;
        while (matched < 4) {
            int b = in.read();
            if (b < 0) {
                return new Reply(-1, Map.of(), "", false, headBytes.size() == 0 ? "closed without an answer"
                        : "closed inside the headers: " + headBytes.toString(StandardCharsets.ISO_8859_1));
            }
            headBytes.write(b);
            matched = (b == '\r' || b == '\n') && "\r\n\r\n".charAt(matched) == b ? matched + 1 : (b == '\r' ? 1 : 0);
            if (headBytes.size() > 65_536) {
                return new Reply(-1, Map.of(), "", false, "headers over 64 KiB");
            }
        }
        String[] lines = headBytes.toString(StandardCharsets.ISO_8859_1).split("\r\n");
        int status = Integer.parseInt(lines[0].split(" ")[1]);
        Map<String, List<String>> headers = new HashMap<>();
        for (int i = 1; i < lines.length; i++) {
            int colon = lines[i].indexOf(':');
            if (colon > 0) {
                headers.computeIfAbsent(lines[i].substring(0, colon).trim().toLowerCase(Locale.ROOT), k -> new ArrayList<>())
                        .add(lines[i].substring(colon + 1).trim());
            }
        }
        String type = headers.getOrDefault("content-type", List.of("")).getFirst();
        if (type.startsWith("text/event-stream")) {
            return new Reply(status, headers, "", true, null);
        }
        byte[] body;
        String encoding = headers.getOrDefault("transfer-encoding", List.of("")).getFirst();
        String length = headers.getOrDefault("content-length", List.of("")).getFirst();
        if (encoding.equalsIgnoreCase("chunked")) {
            body = dechunk(in);
        } else if (!length.isEmpty()) {
            body = in.readNBytes(Integer.parseInt(length));
        } else {
            body = in.readAllBytes();
        }
        return new Reply(status, headers, new String(body, StandardCharsets.UTF_8), false, null);
    }

    private static byte[] dechunk(InputStream in) throws IOException {
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        while (true) {
            String sizeLine = line(in);
            int size = Integer.parseInt(sizeLine.split(";")[0].trim(), 16);
            if (size == 0) {
                return body.toByteArray();
            }
            body.writeBytes(in.readNBytes(size));
            line(in);
        }
    }

    private static String line(InputStream in) throws IOException {
        StringBuilder line = new StringBuilder();
        for (int b; (b = in.read()) >= 0 && b != '\n'; ) {
            if (b != '\r') {
                line.append((char) b);
            }
        }
        return line.toString();
    }
}
