package dev.kage.store;

import dev.kage.task.Assignment;
import dev.kage.task.ErrorRecord;
import dev.kage.task.JobMessage;
import dev.kage.task.JobStatus;
import dev.kage.task.Priority;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskRecord;
import dev.kage.task.TaskStatus;
import java.math.BigDecimal;
import java.time.Instant;
import java.util.Arrays;
import java.util.UUID;

/** Builders of rows for store tests. */
public final class StoreTestData {
    private StoreTestData() {
    }

    public static TaskRecord task(String tenant, String... agents) {
        return new TaskRecord(UUID.randomUUID(), tenant, "Quick test", TaskStatus.QUEUED, Priority.NORMAL, null, "main",
                Arrays.stream(agents).map(a -> new Assignment(a, 60)).toList(), null, 50_000, Instant.now(), Instant.now(), null);
    }

    public static ResultRecord result(TaskRecord task, String agent, JobStatus status, String cost) {
        return new ResultRecord(task.id(), JobMessage.jobId(task.id().toString(), agent), agent, status, "did it", 100, 20, 0, 0,
                new BigDecimal(cost), "agent", "demo", 1500, 0, "kage/" + task.id() + "/" + agent, "abc", "1 file changed",
                "w1", 1, null);
    }

    public static ErrorRecord budgetViolation(TaskRecord task, String agent) {
        return new ErrorRecord(task.id(), JobMessage.jobId(task.id().toString(), agent), agent, "BudgetExceededError",
                "Task would exceed token budget: 51000 > 50000",
                "{\"cli_name\": \"" + agent + "\", \"tokens_used\": 51000, \"token_limit\": 50000, \"usage_stats\": "
                        + "{\"tokens_used\": 51000, \"tokens_remaining\": -1000, \"percent_used\": 102.0, \"warning_issued\": true}}",
                false, null, JobMessage.jobId(task.id().toString(), agent) + "#1#BudgetExceededError");
    }

    /**
     * A 429 as the worker logs it: {@code final} when the job gave up after its retries (then not retryable).
     *
     * @param retry the rate-limit retry this 429 used up, from 1
     */
    public static ErrorRecord rateLimited(TaskRecord task, String agent, int retry, boolean last) {
        String jobId = JobMessage.jobId(task.id().toString(), agent);
        return new ErrorRecord(task.id(), jobId, agent, "RateLimitError",
                last ? "Agent " + agent + " was still rate limited after " + (retry - 1) + " retries; giving up"
                        : "Agent " + agent + " was rate limited; retry " + retry + " of 5",
                "{\"cli_name\": \"" + agent + "\", \"attempt\": 1, \"rate_limit_retry\": " + retry
                        + ", \"max_retries\": 5, \"final\": " + last + "}",
                !last, null, jobId + "#1#RateLimitError#" + (retry - 1));
    }
}
