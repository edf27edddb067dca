package dev.kage.testing;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A {@code redis-server} of the test's own (child process, 127.0.0.1, a free port, a temp dir), for
 * tests that kill, stop or restart Redis; the shared Redis must never be touched that way.
 * {@link #restart()} reuses the port and dir, so an AOF written before is reloaded. Output goes to
 * {@code redis.log} in {@link #dir()}. A JVM shutdown hook kills servers a test forgot to close.
 * Thread-safe: lifecycle methods are serialised.
 */
public final class PrivateRedis implements AutoCloseable {
    /** What survives a restart: nothing, or an AOF fsynced every second or on every write. */
    public enum Persistence { NONE, AOF_EVERYSEC, AOF_ALWAYS }

    private static final Duration READY_TIMEOUT = Duration.ofSeconds(15);
    private static final Set<PrivateRedis> LIVE = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> LIVE.forEach(PrivateRedis::kill), "private-redis-reaper"));
    }

    private final Path binary;
    private final Path dir;
    private final Persistence persistence;
    private final int port;
    private Process process;

    private PrivateRedis(Path binary, Path dir, Persistence persistence, int port) {
        this.binary = binary;
        this.dir = dir;
        this.persistence = persistence;
        this.port = port;
    }

    /** Whether a {@code redis-server} binary exists, for {@code assumeTrue(PrivateRedis.available())}. */
    public static boolean available() {
        return findBinary() != null;
    }

    /** Starts a server with an AOF fsynced every second ({@code aof}) or no persistence at all. */
    public static PrivateRedis start(boolean aof) {
        return start(aof ? Persistence.AOF_EVERYSEC : Persistence.NONE);
    }

    /** Starts a server and waits until it answers PING. */
    public static PrivateRedis start(Persistence persistence) {
        Path binary = findBinary();
        if (binary == null) {
            throw new IllegalStateException("no redis-server on PATH or in /usr/bin; install redis-server or skip with assumeTrue(PrivateRedis.available())");
        }
        RuntimeException failure = null;
        // the free port can be taken by someone else before redis-server binds it: try a few
        for (int attempt = 0; attempt < 3; attempt++) {
            PrivateRedis redis;
            try {
                redis = new PrivateRedis(binary, Files.createTempDirectory("kage-redis-"), persistence, freePort());
            } catch (IOException e) {
                throw new UncheckedIOException("cannot create a temp dir or find a free port for redis-server", e);
            }
            LIVE.add(redis);
            try {
                redis.restart();
                return redis;
            } catch (RuntimeException e) {
                redis.close();
                failure = e;
            }
        }
        throw failure;
    }

    public String url() {
        return "redis://127.0.0.1:" + port;
    }

    public int port() {
        return port;
    }

    /** The server's working dir: AOF files and {@code redis.log}. */
    public Path dir() {
        return dir;
    }

    /** SIGKILL, as a crash or OOM kill would; returns once the process is gone. */
    public synchronized void kill() {
        if (process != null) {
            process.destroyForcibly();
            waitForExit();
        }
    }

    /** SIGTERM: Redis shuts down cleanly (flushes the AOF); SIGKILL if it takes longer than 10 s. */
    public synchronized void stop() {
        if (process != null) {
            process.destroy();
            waitForExit();
        }
    }

    /** Stops a running server, then starts it again on the same port and dir and waits until it answers PING. */
    public synchronized void restart() {
        stop();
        List<String> command = new ArrayList<>(List.of(binary.toString(), "--port", String.valueOf(port),
                "--bind", "127.0.0.1", "--dir", dir.toString(), "--daemonize", "no", "--save", ""));
        switch (persistence) {
            case NONE -> command.addAll(List.of("--appendonly", "no"));
            case AOF_EVERYSEC -> command.addAll(List.of("--appendonly", "yes", "--appendfsync", "everysec"));
            case AOF_ALWAYS -> command.addAll(List.of("--appendonly", "yes", "--appendfsync", "always"));
        }
        try {
            process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("redis.log").toFile())).start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run " + binary, e);
        }
        Process started = process;
        // redis-server gives no readiness signal a JVM can wait on, so ask PING in a short, bounded poll
        await().atMost(READY_TIMEOUT).pollInterval(Duration.ofMillis(20)).until(() -> {
            if (!started.isAlive()) {
                throw new IllegalStateException("redis-server on port " + port + " exited with " + started.exitValue() + ":\n" + logTail());
            }
            return answersPing();
        });
    }

    /** Kills the server and deletes its dir. */
    @Override
    public synchronized void close() {
        kill();
        LIVE.remove(this);
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
        } catch (IOException ignored) {
            // already gone
        }
    }

    private void waitForExit() {
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
        process = null;
    }

    /** True once the server answers PING with PONG; false while it refuses connections or is still loading the AOF. */
    private boolean answersPing() {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 200);
            socket.setSoTimeout(500);
            socket.getOutputStream().write("PING\r\n".getBytes(StandardCharsets.US_ASCII));
            InputStream in = socket.getInputStream();
            byte[] reply = in.readNBytes(7);
            return "+PONG\r\n".equals(new String(reply, StandardCharsets.US_ASCII));
        } catch (IOException e) {
            return false;
        }
    }

    private String logTail() {
        try {
            List<String> lines = Files.readAllLines(dir.resolve("redis.log"));
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size()));
        } catch (IOException e) {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0)) {
            return socket.getLocalPort();
        }
    }

    private static Path findBinary() {
        String path = System.getenv().getOrDefault("PATH", "");
        return Stream.concat(Stream.of(path.split(java.io.File.pathSeparator)), Stream.of("/usr/bin", "/usr/local/bin"))
                .filter(entry -> !entry.isBlank())
                .map(entry -> Path.of(entry, "redis-server"))
                .filter(Files::isExecutable)
                .findFirst().orElse(null);
    }
}
