package dev.kage.client;

import java.time.Duration;
import java.util.List;

/**
 * Why a command could not do its work, with the exit status it ends with. The message is printed to standard error
 * after {@code kage: }.
 */
public class ClientException extends RuntimeException {
    private final int exitCode;
    private final boolean retryable;

    public ClientException(int exitCode, String message) {
        this(exitCode, message, null, false);
    }

    public ClientException(int exitCode, String message, Throwable cause) {
        this(exitCode, message, cause, false);
    }

    private ClientException(int exitCode, String message, Throwable cause, boolean retryable) {
        super(message, cause);
        this.exitCode = exitCode;
        this.retryable = retryable;
    }

    /** One of {@link ExitCodes}. */
    public int exitCode() {
        return exitCode;
    }

    /**
     * Whether trying again later may succeed: the coordinator could not be reached, an event stream broke, a 5xx or a
     * 429.
     * Not for an answer that is not the API's (a redirect, an HTML page): the URL is wrong, and stays wrong.
     */
    public boolean retryable() {
        return retryable;
    }

    /** Bad client configuration: a missing key, an unreadable config file, a URL that is not one. */
    public static ClientException usage(String message) {
        return new ClientException(ExitCodes.USAGE, message);
    }

    /** The coordinator could not be reached or did not answer in time. */
    public static ClientException unreachable(String message, Throwable cause) {
        return new ClientException(ExitCodes.UNAVAILABLE, message, cause, true);
    }

    /**
     * Something answered that is not the coordinator's API (a redirect, a 200 with an HTML page, a body without the
     * field every answer of that route has): {@link ExitCodes#UNAVAILABLE}, and not worth retrying.
     */
    public static ClientException notTheApi(String message) {
        return new ClientException(ExitCodes.UNAVAILABLE, message, null, false);
    }

    /**
     * An answer of the API with a status of 400 or more.
     *
     * @param status      the HTTP status
     * @param error       the body's {@code error} code, or null when the body was not the API's JSON
     * @param apiMessage  the body's {@code message} (or the body itself, shortened, when it was not JSON)
     * @param fieldErrors {@code field: message} for each entry of the body's {@code errors}
     * @param retryAfter  the {@code Retry-After} header (a 503 during a Postgres outage), or null
     */
    public static final class ApiError extends ClientException {
        private final int status;
        private final String error;
        private final String apiMessage;
        private final List<String> fieldErrors;
        private final Duration retryAfter;

        public ApiError(int status, String error, String apiMessage, List<String> fieldErrors) {
            this(status, error, apiMessage, fieldErrors, null);
        }

        public ApiError(int status, String error, String apiMessage, List<String> fieldErrors, Duration retryAfter) {
            // 429 (too many event streams of the tenant open at once, say) may pass too: a stream waits its Retry-After.
            super(status >= 500 ? ExitCodes.UNAVAILABLE : ExitCodes.API_REFUSED, status + ": " + apiMessage, null,
                    status >= 500 || status == 429);
            this.status = status;
            this.error = error;
            this.apiMessage = apiMessage;
            this.fieldErrors = List.copyOf(fieldErrors);
            this.retryAfter = retryAfter;
        }

        /** How long the server asked to wait before trying again, or null. */
        public Duration retryAfter() {
            return retryAfter;
        }

        public int status() {
            return status;
        }

        public String error() {
            return error;
        }

        public String apiMessage() {
            return apiMessage;
        }

        public List<String> fieldErrors() {
            return fieldErrors;
        }
    }
}
