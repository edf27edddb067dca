package dev.kage.coordinator.events;

import io.micronaut.http.sse.Event;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;

/**
 * An event stream's keep-alives: a {@code : keep-alive} comment every {@code heartbeat}, on time whatever the
 * backends do, and beside it a blocking check per tick (has the key been revoked, has the task ended), run on
 * {@code blocking}, given up after {@link #CHECK_TIMEOUT} (then {@code unknown} stands for its answer); a tick that
 * comes while a check still runs is dropped. Stateless; thread-safe.
 */
final class KeepAlive {
    /** How long a keep-alive's check may take before the stream goes on without its answer. */
    static final Duration CHECK_TIMEOUT = Duration.ofSeconds(5);
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(KeepAlive.class);

    private KeepAlive() {
    }

    /**
     * @param react what the stream sends for a check's answer (nothing, or events ending with the stream's end marker)
     */
    static <T> Flux<Event<String>> of(Duration heartbeat, Scheduler blocking, Callable<T> check, T unknown,
                                      Function<T, Publisher<Event<String>>> react) {
        Flux<Event<String>> comments = Flux.interval(heartbeat, heartbeat).onBackpressureDrop()
                .map(tick -> Event.of("").comment("keep-alive"));
        Flux<Event<String>> checks = Flux.interval(heartbeat, heartbeat).onBackpressureDrop()
                .concatMap(tick -> Mono.fromCallable(check)
                        .subscribeOn(blocking)
                        .timeout(CHECK_TIMEOUT, Mono.just(unknown))
                        .onErrorResume(e -> {
                            LOG.debug("An event stream's keep-alive check failed: {}", e.toString());
                            return Mono.just(unknown);
                        })
                        .flatMapMany(react), 1);
        return Flux.merge(comments, checks);
    }
}
