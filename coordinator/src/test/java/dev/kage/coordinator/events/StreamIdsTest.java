package dev.kage.coordinator.events;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class StreamIdsTest {

    @Test
    void idsOrderByTimeThenSequenceAsUnsignedNumbers() {
        assertThat(StreamIds.compare("1718000000000-0", "1718000000000-1")).isNegative();
        assertThat(StreamIds.compare("1718000000001-0", "1718000000000-9")).isPositive();
        assertThat(StreamIds.compare("9-10", "9-9")).isPositive();
        assertThat(StreamIds.compare("5-5", "5-5")).isZero();
        assertThat(StreamIds.compare("1-18446744073709551615", "1-1")).isPositive();
    }

    @Test
    void theSuccessorIsTheNextPossibleId() {
        assertThat(StreamIds.successor("1718000000000-0")).isEqualTo("1718000000000-1");
        assertThat(StreamIds.successor("7-18446744073709551615")).isEqualTo("8-0");
    }

    @Test
    void onlyStreamIdsParse() {
        assertThat(StreamIds.parse(" 1718000000000-3 ")).contains("1718000000000-3");
        assertThat(StreamIds.parse("0001-02")).contains("1-2");
        assertThat(StreamIds.parse("yesterday")).isEmpty();
        assertThat(StreamIds.parse("1-")).isEmpty();
        assertThat(StreamIds.parse("-1-1")).isEmpty();
        assertThat(StreamIds.parse("99999999999999999999-0")).isEmpty();
        assertThat(StreamIds.parse(null)).isEmpty();
    }
}
