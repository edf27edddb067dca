package dev.kage.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP proxy on {@code 127.0.0.1} (a free port) in front of one {@code host:port}, to make Redis or
 * Postgres look down to a client without touching the real, shared server.
 *
 * <p>{@link #cut()} resets every open connection at once; while cut, the listening socket stays bound
 * (so no other process can take the port) but each new connection is reset as soon as it is
 * accepted, so clients fail fast ("connection reset" / "EOF") instead of hanging. {@link #restore()}
 * forwards again. {@link #stall()} is the other kind of outage: connections stay open and new ones are
 * accepted, but no byte is passed on either way (a server that is up but does not answer) until
 * {@link #resume()}. Each connection uses two virtual threads, one per direction. Thread-safe.
 */
public final class TcpProxy implements AutoCloseable {
    private static final int CONNECT_TIMEOUT_MILLIS = 2_000;

    private final String host;
    private final int targetPort;
    private final ServerSocket server;
    private final Set<Pipe> pipes = new HashSet<>();
    private boolean cut;
    private boolean closed;
    private boolean stalled;

    private TcpProxy(String host, int targetPort) throws IOException {
        this.host = host;
        this.targetPort = targetPort;
        this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    }

    /** Starts a proxy that forwards {@code 127.0.0.1:}{@link #port()} to {@code host:port}. */
    public static TcpProxy start(String host, int port) {
        try {
            TcpProxy proxy = new TcpProxy(host, port);
            Thread.ofVirtual().name("tcp-proxy-accept-" + proxy.port()).start(proxy::acceptLoop);
            return proxy;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open a proxy port for " + host + ":" + port, e);
        }
    }

    /** The local port clients should connect to. */
    public int port() {
        return server.getLocalPort();
    }

    /** Resets every open connection and every new one until {@link #restore()}. */
    public void cut() {
        List<Pipe> open;
        synchronized (this) {
            cut = true;
            notifyAll(); // pumps held by a stall see their sockets reset
            open = new ArrayList<>(pipes);
            pipes.clear();
        }
        open.forEach(Pipe::reset);
    }

    /** Forwards new connections again; connections reset by {@link #cut()} stay gone. */
    public synchronized void restore() {
        cut = false;
    }

    /** Holds every byte, either way, of open and new connections until {@link #resume()}; nothing is reset. */
    public synchronized void stall() {
        stalled = true;
    }

    /** Passes on what {@link #stall()} held, and forwards as before. */
    public synchronized void resume() {
        stalled = false;
        notifyAll();
    }

    /** Waits while stalled; false once the proxy is closed or cut. */
    private synchronized boolean awaitFlowing() throws InterruptedException {
        while (stalled && !closed && !cut) {
            wait();
        }
        return !closed && !cut;
    }

    /** Connections currently forwarded. */
    public synchronized int openConnections() {
        return pipes.size();
    }

    /** Resets every connection and releases the port. */
    @Override
    public void close() {
        synchronized (this) {
            closed = true;
            notifyAll();
        }
        cut();
        try {
            server.close();
        } catch (IOException ignored) {
            // nothing left to release
        }
    }

    /** {@code redisUrl} with host and port replaced by the proxy's; user, password, database and query kept. */
    public static String redirectRedisUrl(String redisUrl, TcpProxy proxy) {
        return redirect(redisUrl, proxy, "redis", "rediss");
    }

    /**
     * A libpq URL ({@code postgresql://user:pw@host:5432/db?sslmode=disable}), or its {@code jdbc:} form,
     * with host and port replaced by the proxy's; user, password, database and query kept.
     */
    public static String redirectDatabaseUrl(String libpqUrl, TcpProxy proxy) {
        if (libpqUrl.startsWith("jdbc:")) {
            return "jdbc:" + redirect(libpqUrl.substring("jdbc:".length()), proxy, "postgresql");
        }
        return redirect(libpqUrl, proxy, "postgresql", "postgres");
    }

    private static String redirect(String url, TcpProxy proxy, String... schemes) {
        URI uri = URI.create(url);
        if (!List.of(schemes).contains(uri.getScheme()) || uri.getHost() == null) {
            throw new IllegalArgumentException(url + ": expected a single-host URL with scheme " + String.join(" or ", schemes)
                    + ", e.g. " + schemes[0] + "://user:secret@127.0.0.1:1234/0");
        }
        return uri.getScheme() + "://" + (uri.getRawUserInfo() == null ? "" : uri.getRawUserInfo() + "@") + "127.0.0.1:"
                + proxy.port() + (uri.getRawPath() == null ? "" : uri.getRawPath())
                + (uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery())
                + (uri.getRawFragment() == null ? "" : "#" + uri.getRawFragment());
    }

    private void acceptLoop() {
        while (!server.isClosed()) {
            Socket client;
            try {
                client = server.accept();
            } catch (IOException e) {
                return; // closed
            }
            Thread.ofVirtual().name("tcp-proxy-connect-" + port()).start(() -> connect(client));
        }
    }

    private void connect(Socket client) {
        Pipe pipe = new Pipe(client, new Socket());
        synchronized (this) {
            if (cut || closed) {
                pipe.reset();
                return;
            }
        }
        try {
            pipe.upstream.connect(new InetSocketAddress(host, targetPort), CONNECT_TIMEOUT_MILLIS);
        } catch (IOException e) {
            pipe.reset(); // target down: the client sees the same as without a proxy, a reset
            return;
        }
        synchronized (this) {
            // a cut() that ran while we were connecting must not miss this pipe
            if (cut || closed) {
                pipe.reset();
                return;
            }
            pipes.add(pipe);
        }
        Thread.ofVirtual().name("tcp-proxy-up-" + port()).start(() -> pump(pipe, pipe.client, pipe.upstream));
        Thread.ofVirtual().name("tcp-proxy-down-" + port()).start(() -> pump(pipe, pipe.upstream, pipe.client));
    }

    private void pump(Pipe pipe, Socket from, Socket to) {
        byte[] buffer = new byte[16 * 1024];
        try {
            InputStream in = from.getInputStream();
            OutputStream out = to.getOutputStream();
            for (int n; (n = in.read(buffer)) >= 0; ) {
                if (!awaitFlowing()) {
                    throw new IOException("proxy closed");
                }
                out.write(buffer, 0, n);
            }
            // pass the FIN on, so bytes still in flight the other way are delivered, not reset
            to.shutdownOutput();
            if (pipe.finished.incrementAndGet() < 2) {
                return;
            }
            forget(pipe);
            pipe.client.close();
            pipe.upstream.close();
        } catch (IOException | InterruptedException e) {
            // a peer reset, or cut() closed the sockets under us
            forget(pipe);
            pipe.reset();
        }
    }

    private synchronized void forget(Pipe pipe) {
        pipes.remove(pipe);
    }

    /** One client connection and its upstream connection. */
    private static final class Pipe {
        final Socket client;
        final Socket upstream;
        /** Directions that reached end of stream. */
        final AtomicInteger finished = new AtomicInteger();

        Pipe(Socket client, Socket upstream) {
            this.client = client;
            this.upstream = upstream;
        }

        /** Closes both sockets with linger 0, so each peer gets an RST at once rather than a lingering FIN. */
        void reset() {
            for (Socket socket : List.of(client, upstream)) {
                try {
                    if (!socket.isClosed()) {
                        socket.setSoLinger(true, 0);
                    }
                } catch (IOException ignored) {
                    // not connected: close() below is all there is to do
                }
                try {
                    socket.close();
                } catch (IOException ignored) {
                    // already closed
                }
            }
        }
    }
}
