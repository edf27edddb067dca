package dev.kage.coordinator.ops;

import dev.kage.agent.AgentCatalog;
import dev.kage.queue.JobQueue;
import dev.kage.queue.JobQueue.Depth;
import dev.kage.task.Priority;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micronaut.context.annotation.Context;
import jakarta.annotation.PostConstruct;
import jakarta.annotation.PreDestroy;
import java.time.Duration;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The queues as gauges, for {@code GET /prometheus}: per configured agent and priority {@code kage_queue_depth}
 * (entries not yet delivered), {@code kage_queue_pending} (delivered, not acknowledged) and
 * {@code kage_queue_oldest_age_seconds}; per agent {@code kage_queue_delayed}; and {@code kage_queue_dead_letters}.
 *
 * <p>A scrape never touches Redis: one background thread reads the figures ({@link JobQueue#depth}, the same as
 * {@code GET /api/v1/queues}) every {@link #REFRESH_EVERY} and the gauges report the last reading. While Redis cannot
 * be read the gauges report NaN (unknown, not a stale number) and {@code kage_queue_refresh_errors_total} counts the
 * failed readings; the scrape itself still answers. Thread-safe.
 */
@Context
public class QueueMetrics {
    private static final Logger LOG = LoggerFactory.getLogger(QueueMetrics.class);
    /** How often the figures are read from Redis. */
    public static final Duration REFRESH_EVERY = Duration.ofSeconds(5);

    private final JobQueue queue;
    private final Map<String, Map<Priority, Reading>> readings = new LinkedHashMap<>();
    private final Map<String, Value> delayed = new LinkedHashMap<>();
    private final Value dead = new Value();
    private final Counter refreshErrors;
    private final ScheduledExecutorService refresher = Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kage-queue-metrics").factory());
    private volatile boolean failing;

    public QueueMetrics(JobQueue queue, AgentCatalog catalog, MeterRegistry registry) {
        this.queue = queue;
        for (String agent : catalog.names()) {
            Map<Priority, Reading> byPriority = new EnumMap<>(Priority.class);
            for (Priority priority : Priority.values()) {
                Reading reading = new Reading();
                byPriority.put(priority, reading);
                String p = priority.wireName();
                Gauge.builder("kage.queue.depth", reading.waiting, Value::get)
                        .description("Jobs waiting in the stream, not yet delivered to a worker")
                        .tag("agent", agent).tag("priority", p).strongReference(true).register(registry);
                Gauge.builder("kage.queue.pending", reading.pending, Value::get)
                        .description("Jobs delivered to a worker and not yet acknowledged (running, or awaiting reclaim)")
                        .tag("agent", agent).tag("priority", p).strongReference(true).register(registry);
                Gauge.builder("kage.queue.oldest.age", reading.oldestAge, Value::get).baseUnit("seconds")
                        .description("Age of the oldest waiting or pending job (Redis clock), 0 when none")
                        .tag("agent", agent).tag("priority", p).strongReference(true).register(registry);
            }
            readings.put(agent, byPriority);
            Value agentDelayed = new Value();
            delayed.put(agent, agentDelayed);
            Gauge.builder("kage.queue.delayed", agentDelayed, Value::get)
                    .description("Retries and deferrals not yet due").tag("agent", agent).strongReference(true).register(registry);
        }
        Gauge.builder("kage.queue.dead.letters", dead, Value::get).description("Entries in the dead-letter stream, all agents")
                .strongReference(true).register(registry);
        refreshErrors = Counter.builder("kage.queue.refresh.errors")
                .description("Readings of the queue figures that failed (Redis unreachable)").register(registry);
    }

    @PostConstruct
    void start() {
        refresher.scheduleWithFixedDelay(this::refresh, 0, REFRESH_EVERY.toMillis(), TimeUnit.MILLISECONDS);
    }

    @PreDestroy
    void stop() {
        refresher.shutdownNow();
    }

    /** Reads every figure once; on a failure every gauge reads NaN until a reading succeeds. */
    void refresh() {
        try {
            for (var agent : readings.entrySet()) {
                for (var entry : agent.getValue().entrySet()) {
                    Depth d = queue.depth(agent.getKey(), entry.getKey());
                    Reading r = entry.getValue();
                    // A Redis before 7.0 cannot say what waits: then entries not pending is the nearest figure.
                    r.waiting.set(d.waiting() >= 0 ? d.waiting() : Math.max(0, d.length() - d.pending()));
                    r.pending.set(d.pending());
                    r.oldestAge.set(d.oldestAgeMs() / 1000.0);
                }
                delayed.get(agent.getKey()).set(queue.delayed(agent.getKey()));
            }
            dead.set(queue.deadCount());
            if (failing) {
                LOG.info("Queue metrics: Redis answers again");
                failing = false;
            }
        } catch (RuntimeException e) {
            refreshErrors.increment();
            readings.values().forEach(m -> m.values().forEach(Reading::unknown));
            delayed.values().forEach(v -> v.set(Double.NaN));
            dead.set(Double.NaN);
            if (!failing) {
                LOG.warn("Queue metrics: cannot read the queues ({}); the gauges read NaN until Redis answers", e.toString());
                failing = true;
            }
        }
    }

    /** One stream's last reading. */
    private static final class Reading {
        final Value waiting = new Value();
        final Value pending = new Value();
        final Value oldestAge = new Value();

        void unknown() {
            waiting.set(Double.NaN);
            pending.set(Double.NaN);
            oldestAge.set(Double.NaN);
        }
    }

    /** A figure written by the refresher and read by scrapes. */
    private static final class Value {
        private volatile double value = Double.NaN;

        double get() {
            return value;
        }

        void set(double value) {
            this.value = value;
        }
    }
}
