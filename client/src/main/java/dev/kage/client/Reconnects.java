package dev.kage.client;

import java.time.Duration;

/**
 * When an event stream that broke is opened again, and when to give up: after each failure it waits
 * {@link #DELAY}, or what the server asked in {@code Retry-After} (a 503 while Postgres is down: 5 s), at most
 * {@link #MAX_WAIT}; it gives up (rethrows) when the failures have gone on, without a stream opening in between, for
 * {@link #BUDGET}, or at once for an error that retrying cannot mend (a 4xx, an answer that is not the API's). A stream
 * that opened ({@link #opened()}: it brought a line, an event or a keep-alive) ends the run of failures, however it ends
 * later. Not thread-safe.
 */
final class Reconnects {
    /** Pause before reconnecting when the server said nothing about when. */
    static final Duration DELAY = Duration.ofSeconds(1);
    /** The longest {@code Retry-After} honoured. */
    static final Duration MAX_WAIT = Duration.ofSeconds(60);
    /** How long failures in a row are tolerated before the coordinator counts as unreachable. */
    static final Duration BUDGET = Duration.ofMinutes(5);

    /** Time, and waiting: the system's, or a test's. */
    interface Clock {
        Clock SYSTEM = new Clock() {
            @Override
            public long nanoTime() {
                return System.nanoTime();
            }

            @Override
            public void sleep(Duration duration) throws InterruptedException {
                // Waiting to reconnect to a remote server: there is nothing to wait on but time.
                Thread.sleep(duration.toMillis());
            }
        };

        long nanoTime();

        void sleep(Duration duration) throws InterruptedException;
    }

    private final Clock clock;
    private final Duration budget;
    private long failingSince;
    private boolean failing;

    Reconnects(Clock clock, Duration budget) {
        this.clock = clock;
        this.budget = budget;
    }

    /** A stream opened: the failures so far no longer count. */
    void opened() {
        failing = false;
    }

    /** The stream ended without an error (a proxy, a restarted coordinator): wait a moment before opening it again. */
    void ended() throws InterruptedException {
        clock.sleep(DELAY);
    }

    /**
     * A request failed: waits before the next attempt, or rethrows {@code e} when retrying is pointless or the failures
     * have lasted {@link #BUDGET}.
     */
    void failed(ClientException e) throws InterruptedException {
        if (!e.retryable()) {
            throw e;
        }
        long now = clock.nanoTime();
        if (!failing) {
            failing = true;
            failingSince = now;
        }
        if (now - failingSince >= budget.toNanos()) {
            throw e;
        }
        Duration wait = DELAY;
        if (e instanceof ClientException.ApiError api && api.retryAfter() != null && api.retryAfter().compareTo(wait) > 0) {
            wait = api.retryAfter().compareTo(MAX_WAIT) > 0 ? MAX_WAIT : api.retryAfter();
        }
        clock.sleep(wait);
    }
}
