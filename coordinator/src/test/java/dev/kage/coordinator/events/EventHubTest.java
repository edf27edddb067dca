package dev.kage.coordinator.events;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.kage.events.EventLog;
import dev.kage.testing.RedisFixture;
import dev.kage.testing.TcpProxy;
import dev.kage.testing.TestServices;
import io.lettuce.core.KillArgs;
import io.lettuce.core.Limit;
import io.lettuce.core.Range;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The hub against a real Redis, each test in a namespace of its own. */
class EventHubTest {
    private static final Duration PATIENCE = Duration.ofSeconds(15);

    private final RedisFixture redis = new RedisFixture();
    private final EventLog events = new EventLog(redis.keys(), redis.redis(), Clock.systemUTC());
    private final EventHub hub = new EventHub(redis.client(), TestServices.redisUrl(), redis.keys());

    @AfterEach
    void cleanUp() {
        hub.close();
        redis.close();
    }

    @Test
    void eachSubscriberGetsTheNewEventsItsFilterAccepts() {
        events.publish("task.submitted", Map.of("task_id", "old"));
        hub.start();
        List<String> a = new CopyOnWriteArrayList<>();
        List<String> all = new CopyOnWriteArrayList<>();
        hub.subscribe(e -> "a".equals(e.taskId())).events().subscribe(e -> a.add(e.type()));
        hub.subscribe(e -> true).events().subscribe(e -> all.add(e.taskId()));

        events.publish("job.started", Map.of("task_id", "a"));
        events.publish("job.started", Map.of("task_id", "b"));
        events.publish("job.finished", Map.of("task_id", "a", "task_status", "completed"));

        await().atMost(PATIENCE).until(() -> all.size() == 3);
        assertThat(all).containsExactly("a", "b", "a");
        assertThat(a).containsExactly("job.started", "job.finished");
    }

    @Test
    void aSubscriptionWhoseEventsNobodyReadsIsClosedAndGivesItsTenantsPlaceBack() {
        // A response whose body was never streamed (its client hung up while the past was read) kept its subscription,
        // and its place among the tenant's streams, until the coordinator restarted.
        hub.unclaimedAfter(Duration.ofSeconds(1));
        hub.start();
        EventHub.Subscription forgotten = hub.subscribe("acme", e -> true);
        EventHub.Subscription read = hub.subscribe("acme", e -> true);
        List<String> seen = new CopyOnWriteArrayList<>();
        read.events().subscribe(e -> seen.add(e.type()));
        assertThat(hub.streams("acme")).isEqualTo(2);

        await().atMost(PATIENCE).until(() -> hub.streams("acme") == 1);
        events.publish("job.started", Map.of("task_id", "t", "tenant", "acme"));
        await().atMost(PATIENCE).until(() -> seen.contains("job.started"));
        assertThat(hub.streams("acme")).as("the one being read stays").isEqualTo(1);
        forgotten.close();
        assertThat(hub.streams("acme")).as("a second close changes nothing").isEqualTo(1);
        read.close();
        assertThat(hub.streams("acme")).isZero();
    }

    @Test
    void eventsBufferedBeforeTheFirstReadAreKeptInOrder() {
        hub.start();
        EventHub.Subscription subscription = hub.subscribe(e -> true);
        events.publish("one", Map.of("task_id", "t"));
        events.publish("two", Map.of("task_id", "t"));
        await().atMost(PATIENCE).until(() -> hub.position().equals(lastId()));
        List<String> seen = new CopyOnWriteArrayList<>();
        subscription.events().subscribe(e -> seen.add(e.type()));
        await().atMost(PATIENCE).until(() -> seen.size() >= 2);
        assertThat(seen).containsExactly("one", "two");
    }

    @Test
    void aLostConnectionIsReopenedAndReadingContinuesAfterTheLastEntry() {
        hub.start();
        List<String> seen = new CopyOnWriteArrayList<>();
        hub.subscribe(e -> true).events().subscribe(e -> seen.add(e.type()));
        events.publish("before", Map.of("task_id", "t"));
        await().atMost(PATIENCE).until(() -> seen.contains("before"));

        long hubClient = clientId(redis.namespace() + "-event-hub").orElseThrow();
        redis.redis().clientKill(KillArgs.Builder.id(hubClient));
        events.publish("during", Map.of("task_id", "t"));
        events.publish("after", Map.of("task_id", "t"));

        await().atMost(PATIENCE).until(() -> seen.size() >= 3);
        assertThat(seen).containsExactly("before", "during", "after");
        await().atMost(PATIENCE).until(() -> clientId(redis.namespace() + "-event-hub").filter(id -> id != hubClient).isPresent());
    }

    @Test
    void anOutageIsSurvivedAndEventsPublishedDuringItArriveAfterwardsInOrder() {
        URI direct = URI.create(TestServices.redisUrl());
        try (TcpProxy proxy = TcpProxy.start(direct.getHost(), direct.getPort());
             EventHub proxied = new EventHub(redis.client(), TcpProxy.redirectRedisUrl(TestServices.redisUrl(), proxy),
                     redis.keys())) {
            proxied.start();
            List<String> seen = new CopyOnWriteArrayList<>();
            proxied.subscribe(e -> true).events().subscribe(e -> seen.add(e.type()));
            events.publish("before", Map.of("task_id", "t"));
            await().atMost(PATIENCE).until(() -> seen.contains("before"));

            proxy.cut();
            events.publish("during-1", Map.of("task_id", "t"));
            events.publish("during-2", Map.of("task_id", "t"));
            await().atMost(PATIENCE).until(() -> !proxied.reading());
            assertThat(seen).containsExactly("before");

            proxy.restore();
            events.publish("after", Map.of("task_id", "t"));
            await().atMost(PATIENCE).until(() -> seen.size() >= 4);
            assertThat(seen).containsExactly("before", "during-1", "during-2", "after");
            assertThat(proxied.reading()).isTrue();
        }
    }

    @Test
    void closingTheHubCompletesItsSubscribersAndStopsItsThread() {
        hub.start();
        AtomicBoolean completed = new AtomicBoolean();
        hub.subscribe(e -> true).events().subscribe(e -> { }, error -> { }, () -> completed.set(true));
        await().atMost(PATIENCE).until(() -> clientId(redis.namespace() + "-event-hub").isPresent());
        hub.close();
        assertThat(completed).isTrue();
        assertThat(hub.subscribers()).isZero();
        await().atMost(PATIENCE).until(() -> clientId(redis.namespace() + "-event-hub").isEmpty());
        assertThat(Thread.getAllStackTraces().keySet())
                .noneMatch(t -> t.getName().equals(redis.namespace() + "-event-hub") && t.isAlive());
    }

    private String lastId() {
        var newest = redis.redis().xrevrange(redis.keys().events(), Range.create("-", "+"), Limit.from(1));
        return newest.isEmpty() ? "0-0" : newest.get(0).getId();
    }

    private Optional<Long> clientId(String name) {
        for (String line : redis.redis().clientList().split("\n")) {
            if (line.contains(" name=" + name + " ")) {
                for (String part : line.split(" ")) {
                    if (part.startsWith("id=")) {
                        return Optional.of(Long.parseLong(part.substring(3)));
                    }
                }
            }
        }
        return Optional.empty();
    }
}
