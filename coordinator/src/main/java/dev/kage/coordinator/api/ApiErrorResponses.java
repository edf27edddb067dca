package dev.kage.coordinator.api;

import io.micronaut.context.annotation.Replaces;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.server.exceptions.response.ErrorContext;
import io.micronaut.http.server.exceptions.response.JsonErrorResponseBodyProvider;
import jakarta.inject.Singleton;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The body of every error the framework answers by itself — an unknown route (404), a method the route does not
 * take (405), a query value that does not convert ({@code ?limit=abc}), a missing body, a malformed URI or header,
 * a request head too large — in the API's one {@link ErrorBody} shape instead of Micronaut's {@code _links} /
 * {@code _embedded} one, so a client reads {@code error}, {@code message} and {@code errors[].field} whatever
 * refused it. Thread-safe (no state).
 */
@Singleton
@Replaces(JsonErrorResponseBodyProvider.class)
public class ApiErrorResponses implements JsonErrorResponseBodyProvider<ErrorBody> {

    @Override
    public ErrorBody body(ErrorContext context, HttpResponse<?> response) {
        HttpStatus status = response.status();
        List<ErrorBody.FieldError> fields = new ArrayList<>();
        List<String> messages = new ArrayList<>();
        context.getErrors().forEach(error -> {
            messages.add(error.getMessage());
            // A conversion or binding error carries the argument as its path ("/limit", "/body").
            error.getPath().map(p -> p.startsWith("/") ? p.substring(1) : p).filter(p -> !p.isBlank())
                    .ifPresent(field -> fields.add(new ErrorBody.FieldError(field, error.getMessage())));
        });
        String message = messages.isEmpty() ? response.reason() : String.join("; ", messages);
        if (status == HttpStatus.NOT_FOUND && messages.stream().allMatch(m -> m.equals("Page Not Found"))) {
            message = "no route " + context.getRequest().getMethodName() + " " + context.getRequest().getPath()
                    + "; the API is under /api/v1 (see /swagger-ui)";
        }
        if (status == HttpStatus.BAD_REQUEST && !fields.isEmpty()) {
            return new ErrorBody("validation_failed", "the request is invalid: " + message, fields);
        }
        return new ErrorBody(code(status), message, fields);
    }

    @Override
    public String contentType() {
        return MediaType.APPLICATION_JSON;
    }

    /** {@code not_found}, {@code method_not_allowed}, {@code bad_request}, ...: the status's reason as a code. */
    static String code(HttpStatus status) {
        return switch (status) {
            case REQUEST_ENTITY_TOO_LARGE -> "payload_too_large";
            default -> status.getReason().toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9]+", "_").replaceAll("^_|_$", "");
        };
    }
}
