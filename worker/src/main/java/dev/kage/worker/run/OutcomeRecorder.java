package dev.kage.worker.run;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule;
import dev.kage.redis.KageKeys;
import dev.kage.store.StoreException;
import dev.kage.store.TaskStore;
import dev.kage.task.ErrorRecord;
import dev.kage.task.ResultRecord;
import dev.kage.task.TaskStatus;
import io.lettuce.core.api.sync.RedisCommands;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes job outcomes to Postgres, or, while Postgres is down, keeps them in the agent's outbox list in
 * Redis ({@code kage:outbox:{agent}}) and writes them when it answers again. Writing is idempotent
 * (one result per job attempt, error rows by key), so an outcome flushed twice is stored once.
 * Thread-safe.
 */
public final class OutcomeRecorder {
    private static final Logger LOG = LoggerFactory.getLogger(OutcomeRecorder.class);
    private static final ObjectMapper JSON = new ObjectMapper().registerModule(new JavaTimeModule())
            .disable(SerializationFeature.WRITE_DATES_AS_TIMESTAMPS);

    private final TaskStore store;
    private final KageKeys keys;
    private final RedisCommands<String, String> redis;
    private volatile boolean outage;

    public OutcomeRecorder(TaskStore store, KageKeys keys, RedisCommands<String, String> redis) {
        this.store = store;
        this.keys = keys;
        this.redis = redis;
    }

    /**
     * Records a final outcome.
     *
     * @return the task's status, or empty when the outcome went to the outbox
     */
    public Optional<TaskStatus> record(String agent, ResultRecord result, List<ErrorRecord> errors) {
        try {
            TaskStatus status = store.recordOutcome(result, errors);
            return Optional.of(status);
        } catch (StoreException e) {
            spool(agent, new Spooled(result, errors), e);
            return Optional.empty();
        }
    }

    /** Records the errors of an attempt that will be retried. */
    public void recordErrors(String agent, List<ErrorRecord> errors) {
        try {
            store.insertErrors(errors);
        } catch (StoreException e) {
            spool(agent, new Spooled(null, errors), e);
        }
    }

    /**
     * Writes what the agent's outbox holds, oldest first, stopping at the first failure.
     *
     * @return outcomes written
     */
    public int flush(String agent) {
        String key = keys.outbox(agent);
        int written = 0;
        String head;
        while ((head = redis.lindex(key, 0)) != null) {
            Spooled spooled;
            try {
                spooled = JSON.readValue(head, Spooled.class);
            } catch (JsonProcessingException e) {
                LOG.error("Outbox {} holds an unreadable entry; moved aside: {}", key, e.getOriginalMessage());
                redis.rpush(key + ":unreadable", head);
                redis.lrem(key, 1, head);
                continue;
            }
            try {
                if (spooled.result() != null) {
                    store.recordOutcome(spooled.result(), spooled.errors());
                } else {
                    store.insertErrors(spooled.errors());
                }
            } catch (StoreException e) {
                return written;
            }
            redis.lrem(key, 1, head);
            written++;
        }
        if (outage && written > 0) {
            LOG.info("Postgres answers again: wrote {} outcome(s) kept in {}", written, key);
        }
        outage = false;
        return written;
    }

    /** Outcomes waiting in the agent's outbox. */
    public long pending(String agent) {
        return redis.llen(keys.outbox(agent));
    }

    private void spool(String agent, Spooled spooled, StoreException cause) {
        if (!outage) {
            LOG.error("Postgres unavailable ({}); keeping outcomes in {} until it answers", cause.getMessage(), keys.outbox(agent));
            outage = true;
        }
        try {
            redis.rpush(keys.outbox(agent), JSON.writeValueAsString(spooled));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * One outcome in the outbox.
     *
     * @param result the final result, or {@code null} for the errors of a retried attempt
     */
    record Spooled(ResultRecord result, List<ErrorRecord> errors) {
    }
}
