package dev.kage.budget;

import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/** A budget period, in UTC. A pool of a period outlives it long enough to be reported on. */
public enum Period {
    DAY("day", DateTimeFormatter.ofPattern("yyyy-MM-dd").withZone(ZoneOffset.UTC), Duration.ofDays(3)),
    MONTH("month", DateTimeFormatter.ofPattern("yyyy-MM").withZone(ZoneOffset.UTC), Duration.ofDays(40));

    private final String wireName;
    private final DateTimeFormatter format;
    private final Duration poolTtl;

    Period(String wireName, DateTimeFormatter format, Duration poolTtl) {
        this.wireName = wireName;
        this.format = format;
        this.poolTtl = poolTtl;
    }

    public String wireName() {
        return wireName;
    }

    /** The period holding {@code at}, as it appears in keys: {@code day:2026-11-28}, {@code month:2026-11}. */
    public String id(Instant at) {
        return wireName + ":" + format.format(at);
    }

    /** How long a pool of this period lives after its last change. */
    public Duration poolTtl() {
        return poolTtl;
    }
}
