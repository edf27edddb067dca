package dev.kage.store;

import dev.kage.KageException;

/** Postgres could not be reached or refused a statement. Retryable: the database may come back. */
public class StoreException extends KageException {
    public StoreException(String message, Throwable cause) {
        super(message, true, cause);
    }
}
