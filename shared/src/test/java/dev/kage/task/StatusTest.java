package dev.kage.task;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class StatusTest {

    @Test
    void illegalJobChangesSayFromWhereToWhere() {
        assertThat(JobStatus.QUEUED.moveTo(JobStatus.RUNNING)).isEqualTo(JobStatus.RUNNING);
        assertThatThrownBy(() -> JobStatus.COMPLETED.moveTo(JobStatus.RUNNING))
                .isInstanceOf(IllegalStateChangeException.class)
                .hasMessage("illegal state change from COMPLETED to RUNNING");
        assertThat(JobStatus.RUNNING.canMoveTo(JobStatus.QUEUED)).isTrue();
        assertThat(JobStatus.FAILED.isFinal()).isTrue();
    }

    @Test
    void aTasksStatusFollowsFromItsJobs() {
        assertThat(TaskStatus.of(List.of(JobStatus.QUEUED, JobStatus.QUEUED))).isEqualTo(TaskStatus.QUEUED);
        assertThat(TaskStatus.of(List.of(JobStatus.RUNNING, JobStatus.QUEUED))).isEqualTo(TaskStatus.RUNNING);
        assertThat(TaskStatus.of(List.of(JobStatus.COMPLETED, JobStatus.RUNNING))).isEqualTo(TaskStatus.RUNNING);
        assertThat(TaskStatus.of(List.of(JobStatus.COMPLETED, JobStatus.COMPLETED))).isEqualTo(TaskStatus.COMPLETED);
        assertThat(TaskStatus.of(List.of(JobStatus.COMPLETED, JobStatus.FAILED))).isEqualTo(TaskStatus.PARTIAL);
        assertThat(TaskStatus.of(List.of(JobStatus.FAILED, JobStatus.FAILED))).isEqualTo(TaskStatus.FAILED);
        assertThat(TaskStatus.of(List.of(JobStatus.COMPLETED, JobStatus.CANCELLED))).isEqualTo(TaskStatus.CANCELLED);
        assertThat(TaskStatus.COMPLETED.canMoveTo(TaskStatus.RUNNING)).isFalse();
    }

    @Test
    void jobMessagesRoundTripAndIgnoreUnknownFields() {
        JobMessage job = new JobMessage("t:a", "t", "acme", "a", Priority.HIGH, "do it; $(id)", "", "main", 60, 1000, 2);
        Map<String, String> fields = new java.util.HashMap<>(job.toFields());
        fields.put("added_in_a_later_version", "x");
        assertThat(JobMessage.fromFields(fields)).isEqualTo(job);
        fields.remove("agent");
        assertThatThrownBy(() -> JobMessage.fromFields(fields)).hasMessage("job field 'agent' is missing");
        assertThat(job.logFields().get("description")).isEqualTo("<12 chars>");
    }

    @Test
    void fieldValuesFollowTheFieldNamesAndCarryRateLimitRetriesOnlyAfterA429() {
        JobMessage job = new JobMessage("t:a", "t", "acme", "a", Priority.LOW, "é", null, "main", 60, 1000, 3);
        for (JobMessage message : List.of(job, job.withRateLimitRetry().withRateLimitRetry())) {
            String[] values = message.fieldValues();
            assertThat(values).hasSize(message.fieldCount()).doesNotContainNull();
            Map<String, String> fields = message.toFields();
            assertThat(fields).hasSize(values.length);
            for (int i = 0; i < values.length; i++) {
                assertThat(fields).containsEntry(JobMessage.FIELD_NAMES.get(i), values[i]);
            }
            assertThat(JobMessage.fromFields(fields)).isEqualTo(message.repo() == null
                    ? new JobMessage("t:a", "t", "acme", "a", Priority.LOW, "é", "", "main", 60, 1000, 3,
                    message.rateLimitRetries()) : message);
        }
        assertThat(job.toFields()).doesNotContainKey("rl_retries").containsEntry("repo", "").containsEntry("priority", "low")
                .containsEntry("attempt", "3");
        assertThat(job.withRateLimitRetry().withRateLimitRetry().toFields()).containsEntry("rl_retries", "2");
    }
}
