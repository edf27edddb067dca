package dev.kage;

/**
 * Root of every exception Kage throws on purpose. Whether an operation that failed with it may be
 * retried is a property of the error itself ({@link #retryable()}), not of the code that catches it.
 */
public class KageException extends RuntimeException {
    private final boolean retryable;

    public KageException(String message, boolean retryable) {
        super(message);
        this.retryable = retryable;
    }

    public KageException(String message, boolean retryable, Throwable cause) {
        super(message, cause);
        this.retryable = retryable;
    }

    /** True when running the same operation again may succeed (an outage, a lost connection). */
    public boolean retryable() {
        return retryable;
    }
}
