package dev.kage.client;

import java.util.List;

/**
 * Why a command could not do its work, with the exit status it ends with. The message is printed to standard error
 * after {@code kage: }.
 */
public class ClientException extends RuntimeException {
    private final int exitCode;

    public ClientException(int exitCode, String message) {
        super(message);
        this.exitCode = exitCode;
    }

    public ClientException(int exitCode, String message, Throwable cause) {
        super(message, cause);
        this.exitCode = exitCode;
    }

    /** One of {@link ExitCodes}. */
    public int exitCode() {
        return exitCode;
    }

    /** Bad client configuration: a missing key, an unreadable config file, a URL that is not one. */
    public static ClientException usage(String message) {
        return new ClientException(ExitCodes.USAGE, message);
    }

    /** The coordinator could not be reached or did not answer in time. */
    public static ClientException unreachable(String message, Throwable cause) {
        return new ClientException(ExitCodes.UNAVAILABLE, message, cause);
    }

    /**
     * An answer of the API with a status of 400 or more.
     *
     * @param status      the HTTP status
     * @param error       the body's {@code error} code, or null when the body was not the API's JSON
     * @param apiMessage  the body's {@code message} (or the body itself, shortened, when it was not JSON)
     * @param fieldErrors {@code field: message} for each entry of the body's {@code errors}
     */
    public static final class ApiError extends ClientException {
        private final int status;
        private final String error;
        private final String apiMessage;
        private final List<String> fieldErrors;

        public ApiError(int status, String error, String apiMessage, List<String> fieldErrors) {
            super(status >= 500 ? ExitCodes.UNAVAILABLE : ExitCodes.API_REFUSED, status + ": " + apiMessage);
            this.status = status;
            this.error = error;
            this.apiMessage = apiMessage;
            this.fieldErrors = List.copyOf(fieldErrors);
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
