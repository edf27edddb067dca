package dev.kage.task;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

class TaskIdsTest {
    private static final Clock FIXED = Clock.fixed(Instant.parse("2026-12-01T06:30:00.123Z"), ZoneOffset.UTC);

    @Test
    void anIdIsVersion7WithTheClocksMillisecondsInFront() {
        UUID id = TaskIds.next(FIXED);
        assertThat(id.version()).isEqualTo(7);
        assertThat(id.variant()).as("RFC 9562's variant").isEqualTo(2);
        assertThat(id.getMostSignificantBits() >>> 16).isEqualTo(FIXED.millis());
        // What Postgres sorts by: the hex text, byte by byte.
        assertThat(id.toString()).startsWith(String.format("%08x-%04x-7", FIXED.millis() >>> 16, FIXED.millis() & 0xFFFF));
    }

    @Test
    void aBatchsIdsCountUpInTheOrderGivenEvenWithinOneMillisecondAndAreAllDifferent() {
        List<UUID> ids = TaskIds.next(FIXED, 1_001);
        assertThat(ids).hasSize(1_001).doesNotHaveDuplicates();
        List<String> text = ids.stream().map(UUID::toString).toList();
        assertThat(text).isSortedAccordingTo(String::compareTo);
        assertThat(ids).allSatisfy(id -> assertThat(id.version()).isEqualTo(7));
        // Two calls in the same millisecond still differ: 62 random bits each.
        assertThat(TaskIds.next(FIXED, 2_048)).doesNotContainAnyElementsOf(ids);
        assertThatThrownBy(() -> TaskIds.next(FIXED, 2_049)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> TaskIds.next(FIXED, 0)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void manyThreadsOnOneClockTickNeverDrawTheSameId() throws Exception {
        Set<UUID> seen = ConcurrentHashMap.newKeySet();
        ExecutorService pool = Executors.newFixedThreadPool(16);
        try {
            List<Future<Integer>> done = new ArrayList<>();
            for (int t = 0; t < 16; t++) {
                done.add(pool.submit(() -> {
                    int n = 0;
                    for (int i = 0; i < 200; i++) {
                        for (UUID id : TaskIds.next(FIXED, 50)) {
                            n += seen.add(id) ? 1 : 0;
                        }
                    }
                    return n;
                }));
            }
            int added = 0;
            for (Future<Integer> f : done) {
                added += f.get();
            }
            assertThat(added).isEqualTo(16 * 200 * 50);
        } finally {
            pool.shutdownNow();
        }
        Set<Long> tails = new HashSet<>();
        seen.forEach(id -> tails.add(id.getLeastSignificantBits()));
        assertThat(tails).as("the random tails alone differ").hasSize(seen.size());
    }
}
