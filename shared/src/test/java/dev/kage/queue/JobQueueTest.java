package dev.kage.queue;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.queue.JobQueue.ClaimedJob;
import dev.kage.redis.KageKeys;
import dev.kage.task.JobMessage;
import dev.kage.task.Priority;
import dev.kage.testing.RedisFixture;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class JobQueueTest {
    private final RedisFixture redis = new RedisFixture();
    private final JobQueue queue = new JobQueue(redis.keys(), redis.redis());
    private final StatefulRedisConnection<String, String> blocking = redis.client().connect();

    @AfterEach
    void cleanUp() {
        blocking.close();
        redis.close();
    }

    @Test
    void jobsAddedBeforeAnyWorkerCreatedTheGroupAreStillDelivered() {
        queue.enqueue(job("t1", Priority.NORMAL));
        queue.ensureStreams("demo");
        List<ClaimedJob> claimed = queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(100));
        assertThat(claimed).hasSize(1);
        assertThat(claimed.getFirst().job().taskId()).isEqualTo("t1");
    }

    @Test
    void higherPriorityIsServedFirst() {
        queue.ensureStreams("demo");
        queue.enqueue(job("low", Priority.LOW));
        queue.enqueue(job("normal", Priority.NORMAL));
        queue.enqueue(job("high", Priority.HIGH));
        assertThat(readOne().job().taskId()).isEqualTo("high");
        assertThat(readOne().job().taskId()).isEqualTo("normal");
        assertThat(readOne().job().taskId()).isEqualTo("low");
        assertThat(queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(100))).isEmpty();
    }

    @Test
    void anEntryStaysPendingUntilAcknowledged() {
        queue.ensureStreams("demo");
        queue.enqueue(job("t1", Priority.NORMAL));
        ClaimedJob claimed = readOne();
        String stream = redis.keys().jobStream("demo", Priority.NORMAL);
        assertThat(redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount()).isEqualTo(1);
        queue.ack(claimed);
        assertThat(redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount()).isZero();
    }

    @Test
    void anEntryThatIsNotAJobIsReportedAndCanBeDeadLettered() {
        queue.ensureStreams("demo");
        String stream = redis.keys().jobStream("demo", Priority.NORMAL);
        redis.redis().xadd(stream, Map.of("garbage", "1"));
        ClaimedJob claimed = readOne();
        assertThatThrownBy(claimed::job).isInstanceOf(JobQueue.MalformedJobException.class)
                .hasMessageContaining("job field 'job_id' is missing");
        queue.deadLetter(claimed, "not a job");
        assertThat(redis.redis().xlen(redis.keys().deadLetters())).isEqualTo(1);
        assertThat(redis.redis().xpending(stream, KageKeys.WORKER_GROUP).getCount()).isZero();
    }

    @Test
    void ensuringStreamsTwiceIsHarmless() {
        queue.ensureStreams("demo");
        queue.ensureStreams("demo");
        assertThat(redis.redis().xinfoGroups(redis.keys().jobStream("demo", Priority.HIGH))).hasSize(1);
    }

    private ClaimedJob readOne() {
        List<ClaimedJob> claimed = queue.read(blocking.sync(), "demo", "w1", Duration.ofMillis(100));
        assertThat(claimed).hasSize(1);
        return claimed.getFirst();
    }

    private static JobMessage job(String taskId, Priority priority) {
        return new JobMessage(JobMessage.jobId(taskId, "demo"), taskId, "acme", "demo", priority, "do it", "", "main", 60,
                1000, 1);
    }
}
