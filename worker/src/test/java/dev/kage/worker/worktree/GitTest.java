package dev.kage.worker.worktree;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** git against a remote that accepts and then never answers (a half-open connection): it ends, and leaves nothing. */
class GitTest {
    @TempDir
    Path dir;

    private ServerSocket stalled;
    private final List<Socket> held = new CopyOnWriteArrayList<>();

    @BeforeEach
    void listen() throws Exception {
        stalled = new ServerSocket(0);
        Thread.ofVirtual().start(() -> {
            while (!stalled.isClosed()) {
                try {
                    held.add(stalled.accept());
                } catch (java.io.IOException closed) {
                    return;
                }
            }
        });
    }

    @AfterEach
    void close() throws Exception {
        stalled.close();
        for (Socket socket : held) {
            socket.close();
        }
    }

    @Test
    void aCommandPastItsTimeoutIsKilledEvenWhileItsOutputStaysOpen() {
        assertTimeoutPreemptively(Duration.ofSeconds(30), () -> {
            assertThatThrownBy(() -> Git.runCapped(dir, 1024, false, Duration.ofSeconds(2), "ls-remote", remote()))
                    .isInstanceOf(GitException.class).hasMessageContaining("timed out");
        });
        assertNoGitLeft();
    }

    @Test
    void aStoppedJobsGitEndsAtOnce() throws Exception {
        CompletableFuture<Throwable> failure = new CompletableFuture<>();
        Thread job = Thread.ofPlatform().start(() -> {
            try {
                Git.run(dir, "ls-remote", remote());
                failure.complete(null);
            } catch (RuntimeException e) {
                failure.complete(e);
            }
        });
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> !held.isEmpty());
        job.interrupt();
        Throwable thrown = failure.get(10, TimeUnit.SECONDS);
        assertThat(thrown).isInstanceOf(GitException.class).hasMessageContaining("interrupted");
        assertNoGitLeft();
    }

    private String remote() {
        return "http://127.0.0.1:" + stalled.getLocalPort() + "/acme/app.git";
    }

    private static void assertNoGitLeft() {
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertThat(
                ProcessHandle.current().descendants().filter(ProcessHandle::isAlive)
                        .map(p -> p.info().command().orElse("")).filter(c -> c.contains("git")).toList()).isEmpty());
    }
}
